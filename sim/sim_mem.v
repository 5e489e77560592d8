// Simulation-only memory for tridsa's Verilog simulations (Verilator, Icarus).
// Loads +mem_in=FILE with $readmemh at time 0 (missing words are zero) and writes the whole array
// to +mem_out=FILE with $writememh on every clock edge while `dump` is high. Read-first, 1 cycle.
module tridsa_sim_mem #(parameter WIDTH = 256, parameter DEPTH = 1024, parameter ABITS = 10) (
    input  wire             clk,
    input  wire [ABITS-1:0] addr,
    input  wire             we,
    input  wire [WIDTH-1:0] wdata,
    input  wire             dump,
    output reg  [WIDTH-1:0] rdata
);
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
endmodule
