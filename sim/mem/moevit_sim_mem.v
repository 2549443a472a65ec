// moevit_sim_mem: a SIMULATION-ONLY AXI4 slave memory with PORTS slave ports sharing one
// array (the DRAM of the accelerator's RTL runs).  Not for synthesis.
//
// * Data DATA_W bits, addresses ADDR_W bits, IDs ID_W bits; 2**WORDS_LOG2 words of DATA_W
//   bits starting at byte address BASE.  Full-width INCR bursts of up to 256 beats; a burst
//   that crosses 4 KiB, is not INCR, is narrower than DATA_W or leaves
//   the memory gets SLVERR (reads return 0, writes are dropped), raises the sticky `error`
//   and prints a message.  So does a W burst whose WLAST disagrees with its AWLEN.  An
//   unaligned start address is legal (AXI): the burst starts at the word holding it, and
//   WSTRB says which bytes are written.
// * Per port: up to RD_QUEUE read bursts and WR_QUEUE write bursts outstanding; R beats of
//   a port come in AR order (one burst after the other), B responses in AW order.
//   One beat per cycle per channel when nothing stalls.  WREADY waits for the burst's AW.
// * Runtime knobs (inputs, static during a run): `latency` = cycles from an AR handshake to
//   its first R beat at the earliest; `stall` = probability/256 that a channel holds back
//   READY (AR, AW, W) or does not raise VALID (R, B) in a cycle, drawn from per-channel
//   xorshift32 generators seeded from `seed` at reset.  A raised VALID is never withdrawn.
// * Same-cycle writes of one word by several ports: the highest port number wins; a read
//   in the cycle a word is written returns the old word.
// * Loading/dumping without per-beat traffic: at time 0 `+SIM_MEM_INIT=<file>` is read
//   with $readmemh (words of DATA_W bits, `@<word index>` lines allowed); a `load` pulse
//   reads the file named by `+SIM_MEM_LOAD=` (default sim_mem_load.hex, in the run
//   directory); a `dump` pulse writes words dump_first..dump_last with $writememh to the
//   file named by `+SIM_MEM_DUMP=` (default sim_mem_dump.hex).  moevit.sim.mem.image
//   writes and reads these files.
// * Handshake outputs are 0 from time 0 and READYs stay 0 until a clock edge has seen
//   rst_n high, so 4-state simulators show no X on them.  Words never written or loaded
//   read as 0.
// * `busy`: something is queued, in flight or awaiting its response on some port.
//   rd_beats / wr_beats: 64-bit beat counters per port; cycles: cycles since reset.
module moevit_sim_mem #(
    parameter integer PORTS = 4,
    parameter integer DATA_W = 256,
    parameter integer ADDR_W = 64,
    parameter integer ID_W = 1,
    parameter integer WORDS_LOG2 = 21,
    parameter [63:0] BASE = 64'h0,
    parameter integer RD_QUEUE = 8,
    parameter integer WR_QUEUE = 8
) (
    input  wire                      clk,
    input  wire                      rst_n,
    input  wire [7:0]                stall,
    input  wire [15:0]               latency,
    input  wire [31:0]               seed,
    input  wire                      load,
    input  wire                      dump,
    input  wire [31:0]               dump_first,
    input  wire [31:0]               dump_last,
    output reg                       error,
    output wire                      busy,
    output wire [63:0]               cycles,
    output wire [PORTS*64-1:0]       rd_beats,
    output wire [PORTS*64-1:0]       wr_beats,
    // AXI4 slave ports: port k's signal is bits [k*W +: W]
    input  wire [PORTS*ID_W-1:0]     s_arid,
    input  wire [PORTS*ADDR_W-1:0]   s_araddr,
    input  wire [PORTS*8-1:0]        s_arlen,
    input  wire [PORTS*3-1:0]        s_arsize,
    input  wire [PORTS*2-1:0]        s_arburst,
    input  wire [PORTS-1:0]          s_arvalid,
    output wire [PORTS-1:0]          s_arready,
    output wire [PORTS*ID_W-1:0]     s_rid,
    output wire [PORTS*DATA_W-1:0]   s_rdata,
    output wire [PORTS*2-1:0]        s_rresp,
    output wire [PORTS-1:0]          s_rlast,
    output wire [PORTS-1:0]          s_rvalid,
    input  wire [PORTS-1:0]          s_rready,
    input  wire [PORTS*ID_W-1:0]     s_awid,
    input  wire [PORTS*ADDR_W-1:0]   s_awaddr,
    input  wire [PORTS*8-1:0]        s_awlen,
    input  wire [PORTS*3-1:0]        s_awsize,
    input  wire [PORTS*2-1:0]        s_awburst,
    input  wire [PORTS-1:0]          s_awvalid,
    output wire [PORTS-1:0]          s_awready,
    input  wire [PORTS*DATA_W-1:0]   s_wdata,
    input  wire [PORTS*DATA_W/8-1:0] s_wstrb,
    input  wire [PORTS-1:0]          s_wlast,
    input  wire [PORTS-1:0]          s_wvalid,
    output wire [PORTS-1:0]          s_wready,
    output wire [PORTS*ID_W-1:0]     s_bid,
    output wire [PORTS*2-1:0]        s_bresp,
    output wire [PORTS-1:0]          s_bvalid,
    input  wire [PORTS-1:0]          s_bready
);
    localparam integer BYTES = DATA_W / 8;
    localparam integer SIZE = $clog2(BYTES);          // AxSIZE of a full-width beat
    localparam integer IW = WORDS_LOG2;               // word index bits
    localparam integer PAGE_BEATS = 4096 / BYTES;     // beats per 4 KiB page
    localparam integer RQB = $clog2(RD_QUEUE);
    localparam integer WQB = $clog2(WR_QUEUE);
    localparam [1:0] OKAY = 2'b00, SLVERR = 2'b10, INCR = 2'b01;

    reg [DATA_W-1:0] mem [0:(1 << WORDS_LOG2) - 1];
    reg [63:0] now;
    assign cycles = now;

    // ------------------------------------------------------------------ files
    reg [8*512-1:0] init_file, load_file, dump_file;
    integer i;
    initial begin
        for (i = 0; i < (1 << WORDS_LOG2); i = i + 1) mem[i] = {DATA_W{1'b0}};
        if (!$value$plusargs("SIM_MEM_LOAD=%s", load_file)) load_file = "sim_mem_load.hex";
        if (!$value$plusargs("SIM_MEM_DUMP=%s", dump_file)) dump_file = "sim_mem_dump.hex";
        if ($value$plusargs("SIM_MEM_INIT=%s", init_file)) $readmemh(init_file, mem);
    end

    // write requests of every port, applied by the one always block that writes `mem`
    wire [PORTS-1:0]        wen;
    wire [PORTS*IW-1:0]     waddr;
    wire [PORTS*DATA_W-1:0] wmask;
    wire [PORTS-1:0]        port_busy;
    wire [PORTS-1:0]        port_error;
    assign busy = |port_busy;

    // the slave takes nothing until reset has been seen low and released (no X on READY
    // when rst_n is undriven at time 0)
    reg live = 1'b0;
    always @(posedge clk) live <= (rst_n === 1'b1);

    integer p;
    always @(posedge clk) begin
        for (p = 0; p < PORTS; p = p + 1)
            if (wen[p])
                mem[waddr[p*IW +: IW]] <= (mem[waddr[p*IW +: IW]] & ~wmask[p*DATA_W +: DATA_W])
                                          | (s_wdata[p*DATA_W +: DATA_W] & wmask[p*DATA_W +: DATA_W]);
        if (load) $readmemh(load_file, mem);
        if (dump) begin
            if (dump_last < dump_first || dump_last >= (64'd1 << WORDS_LOG2)) begin
                $display("moevit_sim_mem: ERROR dump words %0d..%0d outside 0..%0d",
                         dump_first, dump_last, (64'd1 << WORDS_LOG2) - 1);
                error <= 1'b1;
            end else
                $writememh(dump_file, mem, dump_first, dump_last);
        end
        if (!rst_n) begin
            now <= 64'd0;
            error <= 1'b0;
        end else begin
            now <= now + 64'd1;
            if (|port_error) error <= 1'b1;
        end
    end

    // xorshift32 step
    function [31:0] xs32(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x << 13);
            y = y ^ (y >> 17);
            xs32 = y ^ (y << 5);
        end
    endfunction

    // A burst's checks; returns 1 when it must be answered with SLVERR (and says why).
    function bad_burst(input integer port, input integer is_write, input [ADDR_W-1:0] addr,
                       input [7:0] len, input [2:0] size, input [1:0] burst);
        reg [ADDR_W:0] off;
        reg [ADDR_W:0] first;
        begin
            bad_burst = 1'b0;
            off = {1'b0, addr} - {1'b0, BASE[ADDR_W-1:0]};
            first = off >> SIZE;
            if (burst != INCR || size != SIZE) begin
                bad_burst = 1'b1;
                $display("moevit_sim_mem: ERROR port %0d %s burst at 0x%h: burst %0d size %0d (need INCR=1 and full width, size %0d)",
                         port, is_write ? "write" : " read", addr, burst, size, SIZE);
            end else if (addr < BASE[ADDR_W-1:0] || first + len >= (65'd1 << WORDS_LOG2)) begin
                bad_burst = 1'b1;
                $display("moevit_sim_mem: ERROR port %0d %s burst 0x%h + %0d beats outside memory 0x%h..0x%h",
                         port, is_write ? "write" : " read", addr, len + 1, BASE,
                         BASE + (64'd1 << (WORDS_LOG2 + SIZE)) - 1);
            end else if (((addr >> SIZE) % PAGE_BEATS) + len >= PAGE_BEATS) begin
                bad_burst = 1'b1;
                $display("moevit_sim_mem: ERROR port %0d %s burst 0x%h + %0d beats crosses a 4 KiB boundary",
                         port, is_write ? "write" : " read", addr, len + 1);
            end
        end
    endfunction

    genvar k, b;
    generate for (k = 0; k < PORTS; k = k + 1) begin : port
        // ---------------------------------------------------------- random stalls
        reg [31:0] rnd_ar = 32'd1, rnd_r = 32'd1, rnd_aw = 32'd1, rnd_w = 32'd1, rnd_b = 32'd1;
        wire stall_ar = rnd_ar[7:0] < stall;
        wire stall_r  = rnd_r[7:0]  < stall;
        wire stall_aw = rnd_aw[7:0] < stall;
        wire stall_w  = rnd_w[7:0]  < stall;
        wire stall_b  = rnd_b[7:0]  < stall;
        always @(posedge clk) begin
            if (!rst_n) begin
                // distinct non-zero states per port and channel
                rnd_ar <= (seed ^ 32'h9E3779B9) + 32'd5 * k + 32'd1;
                rnd_r  <= (seed ^ 32'h85EBCA6B) + 32'd5 * k + 32'd2;
                rnd_aw <= (seed ^ 32'hC2B2AE35) + 32'd5 * k + 32'd3;
                rnd_w  <= (seed ^ 32'h27D4EB2F) + 32'd5 * k + 32'd4;
                rnd_b  <= (seed ^ 32'h165667B1) + 32'd5 * k + 32'd5;
            end else begin
                rnd_ar <= xs32(rnd_ar);
                rnd_r  <= xs32(rnd_r);
                rnd_aw <= xs32(rnd_aw);
                rnd_w  <= xs32(rnd_w);
                rnd_b  <= xs32(rnd_b);
            end
        end

        // ---------------------------------------------------------- read: AR queue
        reg [IW-1:0]   rq_word [0:RD_QUEUE-1];
        reg [7:0]      rq_len  [0:RD_QUEUE-1];
        reg [ID_W-1:0] rq_id   [0:RD_QUEUE-1];
        reg            rq_err  [0:RD_QUEUE-1];
        reg [63:0]     rq_due  [0:RD_QUEUE-1];
        reg [RQB:0]    rq_count = 0;
        reg [RQB-1:0]  rq_head, rq_tail;
        wire [ADDR_W-1:0] araddr = s_araddr[k*ADDR_W +: ADDR_W];
        wire ar_fire = s_arvalid[k] & s_arready[k];
        assign s_arready[k] = live && (rq_count < RD_QUEUE) && !stall_ar;

        // R: the active burst, else the queue head once its latency has passed
        reg            r_active = 1'b0, r_err;
        reg [IW-1:0]   r_word;
        reg [7:0]      r_left;
        reg [ID_W-1:0] r_id;
        reg              rvalid_q = 1'b0, rlast_q;
        reg [DATA_W-1:0] rdata_q;
        reg [ID_W-1:0]   rid_q;
        reg [1:0]        rresp_q;
        reg [63:0]       rd_count;
        wire head_due = (rq_count != 0) && (now >= rq_due[rq_head]);
        wire [IW-1:0]   src_word = r_active ? r_word : rq_word[rq_head];
        wire [7:0]      src_left = r_active ? r_left : rq_len[rq_head];
        wire [ID_W-1:0] src_id   = r_active ? r_id   : rq_id[rq_head];
        wire            src_err  = r_active ? r_err  : rq_err[rq_head];
        wire r_load = (!rvalid_q || s_rready[k]) && (r_active || head_due) && !stall_r;
        wire rq_pop = r_load && !r_active;
        assign s_rvalid[k] = rvalid_q;
        assign s_rlast[k] = rlast_q;
        assign s_rdata[k*DATA_W +: DATA_W] = rdata_q;
        assign s_rid[k*ID_W +: ID_W] = rid_q;
        assign s_rresp[k*2 +: 2] = rresp_q;
        assign rd_beats[k*64 +: 64] = rd_count;

        reg ar_bad, ar_err_q;
        always @(posedge clk) begin
            if (!rst_n) begin
                rq_count <= 0; rq_head <= 0; rq_tail <= 0;
                r_active <= 1'b0; rvalid_q <= 1'b0; rd_count <= 64'd0; ar_err_q <= 1'b0;
            end else begin
                ar_err_q <= 1'b0;
                if (ar_fire) begin
                    ar_bad = bad_burst(k, 0, araddr, s_arlen[k*8 +: 8], s_arsize[k*3 +: 3],
                                       s_arburst[k*2 +: 2]);
                    rq_word[rq_tail] <= (araddr - BASE[ADDR_W-1:0]) >> SIZE;
                    rq_len[rq_tail]  <= s_arlen[k*8 +: 8];
                    rq_id[rq_tail]   <= s_arid[k*ID_W +: ID_W];
                    rq_err[rq_tail]  <= ar_bad;
                    ar_err_q <= ar_bad;
                    rq_due[rq_tail]  <= now + latency;
                    rq_tail <= rq_tail + 1'b1;
                end
                if (rq_pop) rq_head <= rq_head + 1'b1;
                rq_count <= rq_count + ar_fire - rq_pop;
                if (r_load) begin
                    rvalid_q <= 1'b1;
                    rdata_q  <= src_err ? {DATA_W{1'b0}} : mem[src_word];
                    rlast_q  <= src_left == 8'd0;
                    rid_q    <= src_id;
                    rresp_q  <= src_err ? SLVERR : OKAY;
                    r_word   <= src_word + 1'b1;
                    r_left   <= src_left - 8'd1;
                    r_id     <= src_id;
                    r_err    <= src_err;
                    r_active <= src_left != 8'd0;
                end else if (s_rready[k])
                    rvalid_q <= 1'b0;
                if (rvalid_q && s_rready[k]) rd_count <= rd_count + 64'd1;
            end
        end

        // ---------------------------------------------------------- write: AW queue, W, B
        reg [IW-1:0]   wq_word [0:WR_QUEUE-1];
        reg [7:0]      wq_len  [0:WR_QUEUE-1];
        reg [ID_W-1:0] wq_id   [0:WR_QUEUE-1];
        reg            wq_err  [0:WR_QUEUE-1];
        reg [WQB:0]    wq_count = 0;
        reg [WQB-1:0]  wq_head, wq_tail;
        reg [WQB:0]    w_out = 0;             // AWs taken whose B is not yet taken
        reg [ID_W-1:0] bq_id  [0:WR_QUEUE-1];
        reg            bq_err [0:WR_QUEUE-1];
        reg [WQB:0]    bq_count;
        reg [WQB-1:0]  bq_head, bq_tail;
        reg            w_active, w_err;
        reg [IW-1:0]   w_word;
        reg [7:0]      w_left;
        reg            bvalid_q = 1'b0;
        reg [ID_W-1:0] bid_q;
        reg [1:0]      bresp_q;
        reg [63:0]     wr_count;
        reg            w_proto;               // a WLAST mismatch this cycle
        wire [ADDR_W-1:0] awaddr = s_awaddr[k*ADDR_W +: ADDR_W];
        wire aw_fire = s_awvalid[k] & s_awready[k];
        wire w_fire = s_wvalid[k] & s_wready[k];
        wire b_fire = bvalid_q & s_bready[k];
        wire [IW-1:0] wsrc_word = w_active ? w_word : wq_word[wq_head];
        wire [7:0]    wsrc_left = w_active ? w_left : wq_len[wq_head];
        wire          wsrc_err  = w_active ? w_err  : wq_err[wq_head];
        wire w_end = w_fire && (s_wlast[k] || wsrc_left == 8'd0);
        wire b_load = (!bvalid_q || s_bready[k]) && (bq_count != 0) && !stall_b;
        assign s_awready[k] = live && (w_out < WR_QUEUE) && !stall_aw;
        assign s_wready[k] = live && (wq_count != 0) && !stall_w;
        assign s_bvalid[k] = bvalid_q;
        assign s_bid[k*ID_W +: ID_W] = bid_q;
        assign s_bresp[k*2 +: 2] = bresp_q;
        assign wr_beats[k*64 +: 64] = wr_count;
        assign wen[k] = w_fire && !wsrc_err;
        assign waddr[k*IW +: IW] = wsrc_word;
        for (b = 0; b < BYTES; b = b + 1) begin : strobe
            assign wmask[k*DATA_W + b*8 +: 8] = {8{s_wstrb[k*BYTES + b]}};
        end
        assign port_busy[k] = (rq_count != 0) || r_active || rvalid_q || (w_out != 0);

        reg aw_bad, aw_err_q, w_err_q;
        always @(posedge clk) begin
            w_proto = 1'b0;
            if (!rst_n) begin
                wq_count <= 0; wq_head <= 0; wq_tail <= 0; w_out <= 0;
                bq_count <= 0; bq_head <= 0; bq_tail <= 0;
                w_active <= 1'b0; bvalid_q <= 1'b0; wr_count <= 64'd0;
                aw_err_q <= 1'b0; w_err_q <= 1'b0;
            end else begin
                aw_err_q <= 1'b0;
                if (aw_fire) begin
                    aw_bad = bad_burst(k, 1, awaddr, s_awlen[k*8 +: 8], s_awsize[k*3 +: 3],
                                       s_awburst[k*2 +: 2]);
                    aw_err_q <= aw_bad;
                    wq_word[wq_tail] <= (awaddr - BASE[ADDR_W-1:0]) >> SIZE;
                    wq_len[wq_tail]  <= s_awlen[k*8 +: 8];
                    wq_id[wq_tail]   <= s_awid[k*ID_W +: ID_W];
                    wq_err[wq_tail]  <= aw_bad;
                    wq_tail <= wq_tail + 1'b1;
                end
                if (w_fire) begin
                    wr_count <= wr_count + 64'd1;
                    if (s_wlast[k] != (wsrc_left == 8'd0)) begin
                        w_proto = 1'b1;
                        $display("moevit_sim_mem: ERROR port %0d W beat at word %0d: WLAST=%0d but %0d beats of the burst left (AWLEN disagrees)",
                                 k, wsrc_word, s_wlast[k], wsrc_left);
                    end
                    w_word <= wsrc_word + 1'b1;
                    w_left <= wsrc_left - 8'd1;
                    w_err <= wsrc_err;
                    w_active <= !w_end;
                end
                if (w_end) begin
                    wq_head <= wq_head + 1'b1;
                    bq_id[bq_tail]  <= wq_id[wq_head];   // the head stays until its last W
                    bq_err[bq_tail] <= wsrc_err | w_proto;
                    bq_tail <= bq_tail + 1'b1;
                end
                wq_count <= wq_count + aw_fire - w_end;
                if (b_load) begin
                    bvalid_q <= 1'b1;
                    bid_q    <= bq_id[bq_head];
                    bresp_q  <= bq_err[bq_head] ? SLVERR : OKAY;
                    bq_head  <= bq_head + 1'b1;
                end else if (s_bready[k])
                    bvalid_q <= 1'b0;
                bq_count <= bq_count + w_end - b_load;
                w_out <= w_out + aw_fire - b_fire;
                w_err_q <= w_proto;
            end
        end
        assign port_error[k] = ar_err_q | aw_err_q | w_err_q;
    end endgenerate
endmodule
