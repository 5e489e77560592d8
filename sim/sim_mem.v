// Simulation-only memory for tridsa's Verilog simulations. Read-first, 1 cycle; a read address and a
// write address (a block RAM's two ports; hw/memory.py drives both with the request's address except on a
// chip with a write port).
//
// Default (cocotb on Verilator or Icarus): loads +mem_in=FILE with $readmemh at time 0 (missing words are
// zero) and writes the whole array to +mem_out=FILE with $writememh on every clock edge while `dump` is high.
//
// With +define+TRIDSA_DPI_MEM (the fast Verilator harness, sim/verilator_harness.cpp): the words live in
// the harness's memory buffer, read and written through two DPI-C functions; `dump` is ignored.
//
// `stall` (a register) makes the memory refuse the next cycle's request: random stalls for tests, from a
// seed (+mem_stall_seed=N, or the harness's TRIDSA_MEM_STALL_SEED); seed 0 (the default) never stalls. A
// seed gives the same stalls on every run (the harness restarts the sequence for each Program).
module tridsa_sim_mem #(parameter WIDTH = 256, parameter DEPTH = 1024, parameter ABITS = 10) (
    input  wire             clk,
    input  wire [ABITS-1:0] addr,
    input  wire [ABITS-1:0] waddr,
    input  wire             we,
    input  wire [WIDTH-1:0] wdata,
    input  wire             dump,
    output reg  [WIDTH-1:0] rdata,
    output reg              stall
);
`ifdef TRIDSA_DPI_MEM
    import "DPI-C" function void tridsa_mem_read(input int addr, output bit [WIDTH-1:0] data);
    import "DPI-C" function void tridsa_mem_write(input int addr, input bit [WIDTH-1:0] data);
    import "DPI-C" function bit tridsa_mem_stall();
    bit [WIDTH-1:0] word;
    initial stall = 1'b0;
    always @(posedge clk) stall <= tridsa_mem_stall();
    always @(posedge clk) begin
        tridsa_mem_read(32'(addr), word);
        if (we) tridsa_mem_write(32'(waddr), wdata);
        rdata <= word;
    end
`else
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [8*1024-1:0] fname;
    integer i;
    reg [31:0] stall_state;           // xorshift32; one in four cycles stalls
    initial begin
        stall = 1'b0;
        if (!$value$plusargs("mem_stall_seed=%d", stall_state)) stall_state = 32'd0;
        for (i = 0; i < DEPTH; i = i + 1) mem[i] = {WIDTH{1'b0}};
        rdata = {WIDTH{1'b0}};
        if ($value$plusargs("mem_in=%s", fname)) $readmemh(fname, mem);
    end
    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        rdata <= mem[addr];
    end
    always @(posedge clk) begin
        if (stall_state != 32'd0) begin
            stall_state = stall_state ^ (stall_state << 13);
            stall_state = stall_state ^ (stall_state >> 17);
            stall_state = stall_state ^ (stall_state << 5);
            stall <= stall_state[1:0] == 2'd0;
        end
    end
    always @(posedge clk) begin
        if (dump && $value$plusargs("mem_out=%s", fname)) $writememh(fname, mem);
    end
`endif
endmodule
