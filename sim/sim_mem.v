// Simulation-only memory for tridsa's Verilog simulations. Read-first, 1 cycle.
//
// Default (cocotb on Verilator or Icarus): loads +mem_in=FILE with $readmemh at time 0 (missing words are
// zero) and writes the whole array to +mem_out=FILE with $writememh on every clock edge while `dump` is high.
//
// With +define+TRIDSA_DPI_MEM (the fast Verilator harness, sim/verilator_harness.cpp): the words live in
// the harness's memory buffer, read and written through two DPI-C functions; `dump` is ignored.
module tridsa_sim_mem #(parameter WIDTH = 256, parameter DEPTH = 1024, parameter ABITS = 10) (
    input  wire             clk,
    input  wire [ABITS-1:0] addr,
    input  wire             we,
    input  wire [WIDTH-1:0] wdata,
    input  wire             dump,
    output reg  [WIDTH-1:0] rdata
);
`ifdef TRIDSA_DPI_MEM
    import "DPI-C" function void tridsa_mem_read(input int addr, output bit [WIDTH-1:0] data);
    import "DPI-C" function void tridsa_mem_write(input int addr, input bit [WIDTH-1:0] data);
    bit [WIDTH-1:0] word;
    always @(posedge clk) begin
        tridsa_mem_read(32'(addr), word);
        if (we) tridsa_mem_write(32'(addr), wdata);
        rdata <= word;
    end
`else
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [8*1024-1:0] fname;
    integer i;
    initial begin
        for (i = 0; i < DEPTH; i = i + 1) mem[i] = {WIDTH{1'b0}};
        rdata = {WIDTH{1'b0}};
        if ($value$plusargs("mem_in=%s", fname)) $readmemh(fname, mem);
    end
    always @(posedge clk) begin
        if (we) mem[addr] <= wdata;
        rdata <= mem[addr];
    end
    always @(posedge clk) begin
        if (dump && $value$plusargs("mem_out=%s", fname)) $writememh(fname, mem);
    end
`endif
endmodule
