// Top level of the fast Verilator harness (sim/verilator_harness.cpp): tridsa_top with a registered reset
// and the host memory port tied off.
//
// Registering the reset is what makes the harness fast: in Amaranth's Verilog every register's next state
// depends on `rst`, and Verilator re-evaluates all logic that depends on a top-level input at every
// eval() (both clock edges). With `rst` from a register, that logic runs once per rising edge. The core
// sees `rst_req` one cycle late; the harness accounts for it.
module tridsa_fast_top #(parameter INSTR_WIDTH = 256, parameter HOST_REQ_WIDTH = 32,
                         parameter COUNTER_WIDTH = 32) (
    input  wire                     clk,
    input  wire                     rst_req,
    input  wire [INSTR_WIDTH-1:0]   cmd_payload,
    input  wire                     cmd_valid,
    output wire                     cmd_ready,
    output wire                     halted,
    output wire [7:0]               error,
    output wire [31:0]              error_pc,
    output wire [COUNTER_WIDTH-1:0] counters
);
    reg rst_q = 1'b1;
    always @(posedge clk) rst_q <= rst_req;
    tridsa_top core (
        .clk(clk), .rst(rst_q),
        .cmd__payload(cmd_payload), .cmd__valid(cmd_valid), .cmd__ready(cmd_ready),
        .halted(halted), .error(error), .error_pc(error_pc), .counters(counters), .dump(1'b0),
        .host__req__valid(1'b0), .host__req__payload({HOST_REQ_WIDTH{1'b0}}),
        .host__req__ready(), .host__resp__ready(1'b1), .host__resp__valid(), .host__resp__payload()
    );
endmodule
