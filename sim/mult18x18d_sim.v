// Simulation model of the ECP5 MULT18X18D (Lattice TN1267, sysDSP) for the configurations tridsa uses.
// yosys ships only a black box of this primitive (share/ecp5/cells_bb.v). The ports are those of that
// black box. Modelled: P = A x B with each operand signed when its SIGNEDx input is high, the A and B input
// registers (SIGNEDA / SIGNEDB are registered with them), the pipeline and the output register, each
// either unregistered ("NONE") or clocked by CLK0 with enable CE0 and synchronous reset RST0. Any other
// setting stops the simulation rather than being modelled wrongly. The C input and the shift chains
// are not modelled.
`default_nettype none
module MULT18X18D (
    input wire A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input wire B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input wire C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output wire P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    initial begin
        if ((REG_INPUTA_CLK != "NONE" && (REG_INPUTA_CLK != "CLK0" || REG_INPUTA_CE != "CE0" || REG_INPUTA_RST != "RST0"))
         || (REG_INPUTB_CLK != "NONE" && (REG_INPUTB_CLK != "CLK0" || REG_INPUTB_CE != "CE0" || REG_INPUTB_RST != "RST0"))
         || (REG_PIPELINE_CLK != "NONE" && (REG_PIPELINE_CLK != "CLK0" || REG_PIPELINE_CE != "CE0" || REG_PIPELINE_RST != "RST0"))
         || (REG_OUTPUT_CLK != "NONE" && (REG_OUTPUT_CLK != "CLK0" || REG_OUTPUT_CE != "CE0" || REG_OUTPUT_RST != "RST0"))
         || RESETMODE != "SYNC" || MULT_BYPASS != "DISABLED" || SOURCEA !== 1'b0 || SOURCEB !== 1'b0) begin
            $display("MULT18X18D model: unsupported configuration");
            $finish;
        end
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [17:0] a_m, b_m;
    wire sa_m, sb_m;
    MULT18X18D_stage #(.WIDTH(19), .REGISTERED(REG_INPUTA_CLK != "NONE")) input_a (
        .CLK(CLK0), .CE(CE0), .RST(RST0), .D({SIGNEDA, a}), .Q({sa_m, a_m}));
    MULT18X18D_stage #(.WIDTH(19), .REGISTERED(REG_INPUTB_CLK != "NONE")) input_b (
        .CLK(CLK0), .CE(CE0), .RST(RST0), .D({SIGNEDB, b}), .Q({sb_m, b_m}));
    wire signed [36:0] a_x = {{19{sa_m & a_m[17]}}, a_m};
    wire signed [36:0] b_x = {{19{sb_m & b_m[17]}}, b_m};
    wire [35:0] product = a_x * b_x;
    wire [35:0] pipe_m, p;
    MULT18X18D_stage #(.WIDTH(36), .REGISTERED(REG_PIPELINE_CLK != "NONE")) pipeline (
        .CLK(CLK0), .CE(CE0), .RST(RST0), .D(product), .Q(pipe_m));
    MULT18X18D_stage #(.WIDTH(36), .REGISTERED(REG_OUTPUT_CLK != "NONE")) output_register (
        .CLK(CLK0), .CE(CE0), .RST(RST0), .D(pipe_m), .Q(p));
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
endmodule

// One optional register of the multiplier: Q = D when not REGISTERED, else D clocked by CLK with enable CE
// and synchronous reset RST (to 0).
module MULT18X18D_stage #(parameter WIDTH = 1, parameter REGISTERED = 0) (
    input wire CLK, CE, RST,
    input wire [WIDTH-1:0] D,
    output wire [WIDTH-1:0] Q
);
    reg [WIDTH-1:0] r = 0;
    always @(posedge CLK) begin
        if (RST)
            r <= 0;
        else if (CE)
            r <= D;
    end
    assign Q = REGISTERED ? r : D;
endmodule
