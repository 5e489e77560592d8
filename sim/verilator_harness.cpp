// The fast Verilator harness of tridsa_top (see tridsa/sim/verilator_model.py for the Python side).
//
// One process runs many Programs on one compiled model (sim/fast_top.v around tridsa_top) of one Config. The accelerator memory is a file
// shared with the Python driver (mmap, MEM_WORDS x MEM_BYTES bytes, word w at byte w * MEM_BYTES, byte 0
// least significant); sim_mem.v reads and writes it through DPI (built with +define+TRIDSA_DPI_MEM).
//
// Protocol on stdin/stdout, little-endian: "RDY\0", u32 n, n bytes of the reply's fields ("name:bytes"
// separated by spaces, REPLY_FIELDS below: the Python side reads replies by this list) once the memory is
// mapped, then one reply per request:
//   request  "RUN\0", u32 n_words, u64 max_cycles, u32 wave_path_len, wave path bytes,
//            n_words instructions of INSTR_BYTES bytes each
//   reply    "RES\0", the REPLY_FIELDS in order, COUNTER_BYTES bytes of the counters port
// Each run resets the design (rst high for two cycles), leaves one idle cycle, then pushes the
// instructions into `cmd` one per handshake exactly as the cocotb testbench does, and clocks until
// `halted` or until max_cycles clock cycles have passed (the reply then says halted = 0).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include "Vtridsa_fast_top.h"
#include "Vtridsa_fast_top__Dpi.h"
#include "svdpi.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_fst_c.h"
#endif

// The reply's fields after "RES\0", in order (written_lo/hi: words written by the design, [lo, hi), hi = 0
// if none; cycles: cycles run after reset).
#define REPLY_FIELDS(X) \
    X(uint32_t, halted) X(uint32_t, error) X(uint32_t, error_pc) X(uint64_t, cycles) X(uint64_t, written_lo) \
    X(uint64_t, written_hi)

struct Reply {
#define REPLY_MEMBER(type, name) type name;
    REPLY_FIELDS(REPLY_MEMBER)
#undef REPLY_MEMBER
};

static uint8_t* g_mem = nullptr;
static uint64_t g_written_lo, g_written_hi;

static inline uint64_t word_index(int addr) { return static_cast<uint32_t>(addr) % MEM_WORDS; }

static uint32_t g_stall_seed, g_stall_state;    // TRIDSA_MEM_STALL_SEED; 0: the memory never stalls

svBit tridsa_mem_stall() {                      // xorshift32, restarted from the seed for every Program
    if (g_stall_state == 0) return 0;
    g_stall_state ^= g_stall_state << 13;
    g_stall_state ^= g_stall_state >> 17;
    g_stall_state ^= g_stall_state << 5;
    return (g_stall_state & 3) == 0;
}

void tridsa_mem_read(int addr, svBitVecVal* data) {
    std::memcpy(data, g_mem + word_index(addr) * MEM_BYTES, MEM_BYTES);
}

void tridsa_mem_write(int addr, const svBitVecVal* data) {
    uint64_t w = word_index(addr);
    std::memcpy(g_mem + w * MEM_BYTES, data, MEM_BYTES);
    if (w < g_written_lo) g_written_lo = w;
    if (w + 1 > g_written_hi) g_written_hi = w + 1;
}

static bool read_all(void* buf, size_t n) {
    auto* p = static_cast<uint8_t*>(buf);
    while (n) {
        ssize_t got = read(0, p, n);
        if (got <= 0) return false;
        p += got;
        n -= static_cast<size_t>(got);
    }
    return true;
}

static int g_reply_fd = 1;

static void write_all(const void* buf, size_t n) {
    auto* p = static_cast<const uint8_t*>(buf);
    while (n) {
        ssize_t put = write(g_reply_fd, p, n);
        if (put <= 0) std::exit(3);
        p += put;
        n -= static_cast<size_t>(put);
    }
}

template <typename T> static void put(std::vector<uint8_t>& out, T value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    out.insert(out.end(), p, p + sizeof(T));
}

// Copy between a little-endian byte buffer and a Verilator port (a VlWide, or a plain integer).
template <std::size_t N> static void set_port(VlWide<N>& port, const uint8_t* bytes) {
    std::memcpy(port.data(), bytes, N * 4);
}
template <std::size_t N> static void get_port(const VlWide<N>& port, uint8_t* bytes, size_t n) {
    std::memcpy(bytes, port.data(), n);
}
template <typename T> static void get_port(const T& port, uint8_t* bytes, size_t n) {
    uint64_t v = port;
    std::memcpy(bytes, &v, n < 8 ? n : 8);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MEMORY_FILE\n", argv[0]);
        return 2;
    }
    g_reply_fd = dup(1);                   // replies only: whatever the model or a library prints on
    dup2(2, 1);                            // stdout goes to stderr instead of into the protocol
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { std::perror(argv[1]); return 2; }
    size_t bytes = static_cast<size_t>(MEM_WORDS) * MEM_BYTES;
    g_mem = static_cast<uint8_t*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (g_mem == MAP_FAILED) { std::perror("mmap"); return 2; }

    if (const char* seed = std::getenv("TRIDSA_MEM_STALL_SEED")) g_stall_seed = std::strtoul(seed, nullptr, 10);
    std::string fields;
#define REPLY_NAME(type, name) fields += std::string(fields.empty() ? "" : " ") + #name ":" + std::to_string(sizeof(type));
    REPLY_FIELDS(REPLY_NAME)
#undef REPLY_NAME
    uint32_t fields_len = static_cast<uint32_t>(fields.size());
    write_all("RDY", 4);                                         // the driver may unlink the file now
    write_all(&fields_len, 4);
    write_all(fields.data(), fields.size());
    auto context = std::make_unique<VerilatedContext>();
    context->fatalOnError(false);
#if VM_TRACE
    context->traceEverOn(true);
#endif
    auto top = std::make_unique<Vtridsa_fast_top>(context.get(), "tridsa_top");
#if VM_TRACE
    auto trace = std::make_unique<VerilatedFstC>();              // opened for the runs that ask for waves
    top->trace(trace.get(), 99);
#endif
    std::vector<uint8_t> instrs, reply;
    uint64_t time = 0;                     // simulation time in ns; goes on across runs (a trace needs that)
    for (;;) {
        char magic[4];
        uint32_t n_words, wave_len;
        uint64_t max_cycles;
        if (!read_all(magic, 4)) return 0;                       // the driver closed the pipe: done
        if (std::memcmp(magic, "RUN", 4) != 0 || !read_all(&n_words, 4) || !read_all(&max_cycles, 8) ||
            !read_all(&wave_len, 4)) {
            std::fprintf(stderr, "tridsa harness: malformed request\n");
            return 2;
        }
        std::string wave_path(wave_len, '\0');
        instrs.resize(static_cast<size_t>(n_words) * INSTR_BYTES);
        if (!read_all(wave_path.data(), wave_len) || !read_all(instrs.data(), instrs.size())) return 2;

#if VM_TRACE
        if (wave_len) trace->open(wave_path.c_str());
#endif
        uint64_t cycles = 0;
        auto half_step = [&](uint8_t clk) {                     // one clock edge, traced, 5 ns
            top->clk = clk;
            top->eval();
#if VM_TRACE
            if (trace->isOpen()) trace->dump(time);
#endif
            time += 5;
        };
        auto tick = [&] {
            half_step(1);
            half_step(0);
            ++cycles;
        };
        g_written_lo = UINT64_MAX;
        g_written_hi = 0;
        g_stall_state = g_stall_seed;
        top->cmd_valid = 0;
        top->rst_req = 1;                         // the core sees reset one cycle late (sim/fast_top.v):
        top->clk = 0;
        top->eval();
        tick();
        tick();                                   // reset at this rising edge
        top->rst_req = 0;
        tick();                                   // and this one, as under cocotb
        tick();                                   // the testbench's idle cycle after reset
        cycles = 0;
        size_t next = 0;
        while (!top->halted && cycles < max_cycles) {
            if (next < n_words) {
                set_port(top->cmd_payload, &instrs[next * INSTR_BYTES]);
                top->cmd_valid = 1;
                top->eval();
                bool taken = top->cmd_ready;
                tick();
                if (taken) ++next;
                if (next == n_words) top->cmd_valid = 0;
            } else {
                tick();
            }
        }
#if VM_TRACE
        if (trace->isOpen()) trace->close();
#endif
        Reply r;
        r.halted = top->halted;
        r.error = top->error;
        r.error_pc = top->error_pc;
        r.cycles = cycles;
        r.written_lo = g_written_hi ? g_written_lo : 0;
        r.written_hi = g_written_hi;
        reply.clear();
        reply.insert(reply.end(), {'R', 'E', 'S', '\0'});
#define REPLY_PUT(type, name) put<type>(reply, r.name);
        REPLY_FIELDS(REPLY_PUT)
#undef REPLY_PUT
        size_t at = reply.size();
        reply.resize(at + COUNTER_BYTES);
        get_port(top->counters, &reply[at], COUNTER_BYTES);
        write_all(reply.data(), reply.size());
    }
}
