// SPDY/3.1 (draft-mbelshe-httpbis-spdy-00 + the 3.1 flow control), sans-IO: bytes in
// through feed(), bytes out through take_output(); no sockets, no threads, no clock.
// This is the framing the kubelet, the API server and kubectl speak to a runtime's
// streaming server after an "Upgrade: SPDY/3.1" (they use moby/spdystream).
//
// One Session per upgraded connection, in the server role (crisd) or the client role
// (the node tests' client). Callbacks run inside feed() (and nowhere else); they may
// call back into the Session (reply, send_data, reset, ...), but must not destroy it.
// Everything the session answers by itself (PING echoes, RST_STREAMs, WINDOW_UPDATEs)
// lands in the output buffer: a caller should stop reading from a peer whose output
// it cannot write (output_bytes() large), so a peer that never reads cannot grow it.
//
// Errors: a malformed frame, a bad version or a hostile size throws crisd::Error
// (Code::InvalidArgument, "spdy: ..."); a GOAWAY(PROTOCOL_ERROR) is queued first, so a
// caller can write take_output() before closing the socket. After a throw the session
// is dead: feed() throws again. Errors that concern one stream only (data on an unknown
// stream, too many streams, a flow-control overrun) reset that stream with RST_STREAM
// and the session goes on, as the spec says.
//
// Flow control. SPDY/3.1 has per-stream and per-session windows (64 KiB at start).
// moby/spdystream, which every Kubernetes peer uses, implements neither: it never sends
// WINDOW_UPDATE and ignores ours (moby/spdystream#2). A sender that honoured the windows
// strictly would stall after 64 KiB against the kubelet or kubectl. FlowControl::Auto
// (the default) therefore tracks the windows but enforces them only once the peer has
// shown that it speaks 3.1 flow control (it sent a WINDOW_UPDATE or a SETTINGS frame
// with SETTINGS_INITIAL_WINDOW_SIZE); Enforce honours them from the start; Off ignores
// them. Our own WINDOW_UPDATEs are always sent as data is consumed, so a 3.1 peer
// never stalls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crisd::stream::spdy {

using Headers = std::vector<std::pair<std::string, std::string>>;  // names lower-case

enum class Role { Client, Server };

// Control frame types (SPDY/3 section 2.6).
enum class FrameType : uint16_t {
    SynStream = 1,
    SynReply = 2,
    RstStream = 3,
    Settings = 4,
    Ping = 6,
    GoAway = 7,
    Headers = 8,
    WindowUpdate = 9,
};

// RST_STREAM status codes (section 2.6.3).
namespace rst {
inline constexpr uint32_t ProtocolError = 1;
inline constexpr uint32_t InvalidStream = 2;
inline constexpr uint32_t RefusedStream = 3;
inline constexpr uint32_t UnsupportedVersion = 4;
inline constexpr uint32_t Cancel = 5;
inline constexpr uint32_t InternalError = 6;
inline constexpr uint32_t FlowControlError = 7;
inline constexpr uint32_t StreamInUse = 8;
inline constexpr uint32_t StreamAlreadyClosed = 9;
inline constexpr uint32_t FrameTooLarge = 11;
}  // namespace rst

// GOAWAY status codes (section 2.6.6).
namespace goaway {
inline constexpr uint32_t Ok = 0;
inline constexpr uint32_t ProtocolError = 1;
inline constexpr uint32_t InternalError = 2;
}  // namespace goaway

// SETTINGS ids (section 2.6.4).
namespace setting {
inline constexpr uint32_t MaxConcurrentStreams = 4;
inline constexpr uint32_t InitialWindowSize = 7;
}  // namespace setting

inline constexpr uint32_t kDefaultWindow = 64 * 1024;
inline constexpr uint32_t kMaxWindow = 0x7fffffff;
inline constexpr uint32_t kMaxStreamId = 0x7fffffff;

// The SPDY/3 header compression dictionary (section 2.6.10.1), 1423 bytes.
std::string_view header_dictionary();

struct Callbacks {
    std::function<void(uint32_t stream_id, const Headers&, bool fin)> on_syn_stream;  // peer opened a stream
    std::function<void(uint32_t stream_id, const Headers&, bool fin)> on_syn_reply;
    std::function<void(uint32_t stream_id, std::string_view data, bool fin)> on_data;  // fin: peer half-closed
    std::function<void(uint32_t stream_id, uint32_t status)> on_rst_stream;
    std::function<void(uint32_t last_good_id, uint32_t status)> on_goaway;
    // Optional.
    std::function<void(uint32_t stream_id, const Headers&, bool fin)> on_headers;
    std::function<void(uint32_t ping_id)> on_ping_reply;  // the answer to our ping()
};

enum class FlowControl { Auto, Enforce, Off };

struct Options {
    FlowControl flow_control = FlowControl::Auto;
    // Our receive window per stream, announced in an initial SETTINGS frame when it is
    // not the 64 KiB default (or always, with announce_settings). The session window
    // stays at 64 KiB as SPDY/3.1 fixes it; WINDOW_UPDATEs keep both open.
    uint32_t receive_window = kDefaultWindow;
    bool announce_settings = true;
    // true: data counts as consumed when on_data returns (a WINDOW_UPDATE follows once
    // half a window is consumed). false: the application calls consumed() itself.
    bool auto_consume = true;
    // Limits against a hostile peer.
    size_t max_control_frame = 256 * 1024;     // control frame payload (compressed)
    size_t max_header_block = 256 * 1024;      // a header block after inflate
    size_t max_headers = 1024;                 // name/value pairs in one block
    size_t max_data_frame = 16 * 1024 * 1024;  // DATA frame length (payload is streamed, not buffered)
    // Streams the peer may have open at once. kubectl port-forward carries every
    // forwarded connection (two streams each) over one session: a browser
    // behind it opens hundreds.
    size_t max_streams = 2048;
    // Our DATA frames carry at most this much.
    size_t send_frame_size = 32 * 1024;
};

class Session {
public:
    Session(Role role, Callbacks callbacks, Options options = {});
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void feed(std::string_view bytes);  // parse what was read; throws crisd::Error on bad input
    std::string take_output();          // bytes to write to the socket now (may be empty)
    bool wants_write() const;
    size_t output_bytes() const;        // bytes take_output() would return

    uint32_t open_stream(const Headers&, bool fin);                       // SYN_STREAM (client: odd ids; server: even)
    void reply(uint32_t stream_id, const Headers&, bool fin);             // SYN_REPLY
    void send_headers(uint32_t stream_id, const Headers&, bool fin);      // HEADERS
    void send_data(uint32_t stream_id, std::string_view data, bool fin);  // queued; honours flow control
    void close_stream(uint32_t stream_id) { send_data(stream_id, {}, true); }  // half-close
    void reset(uint32_t stream_id, uint32_t status);                      // RST_STREAM
    void goaway(uint32_t status);
    uint32_t ping();                                                       // PING; the answer comes to on_ping_reply
    void consumed(uint32_t stream_id, size_t bytes);                       // with auto_consume = false

    size_t queued_bytes() const;  // data waiting for window (for backpressure)
    size_t queued_bytes(uint32_t stream_id) const;
    bool stream_open(uint32_t stream_id) const;  // known and not fully closed or reset
    size_t open_streams() const;
    bool goaway_sent() const { return goaway_sent_; }
    bool goaway_received() const { return goaway_received_; }
    bool flow_control_active() const;  // windows are being enforced on what we send
    int64_t send_window(uint32_t stream_id) const;  // stream 0: the session window

private:
    struct Stream;
    class Deflater;
    class Inflater;

    void fail(const std::string& message);  // queues GOAWAY(PROTOCOL_ERROR), throws
    void parse();
    bool parse_control(uint16_t version, uint16_t type, uint8_t flags, std::string_view payload);
    void on_data_bytes(std::string_view bytes, bool last);
    Headers decode_headers(std::string_view compressed);
    std::string encode_headers(const Headers&);
    void write_control(FrameType type, uint8_t flags, std::string_view payload);
    void write_data_frame(uint32_t stream_id, uint8_t flags, std::string_view data);
    void write_rst(uint32_t stream_id, uint32_t status);
    void write_window_update(uint32_t stream_id, uint32_t delta);
    void pump();
    void maybe_forget(uint32_t stream_id);
    void account_received(uint32_t stream_id, size_t bytes);
    void credit(uint32_t stream_id, size_t bytes);
    Stream* find(uint32_t stream_id);
    const Stream* find(uint32_t stream_id) const;
    Stream& must_find(uint32_t stream_id, const char* what);
    bool is_peer_id(uint32_t stream_id) const;

    Role role_;
    Callbacks cb_;
    Options opt_;
    std::unique_ptr<Deflater> deflater_;
    std::unique_ptr<Inflater> inflater_;
    std::map<uint32_t, Stream> streams_;
    std::string in_;
    size_t in_pos_ = 0;  // parsed up to here
    bool parsing_ = false;
    std::string out_;
    bool dead_ = false;
    bool goaway_sent_ = false;
    bool goaway_received_ = false;
    bool peer_flow_control_ = false;
    uint32_t next_stream_id_;
    uint32_t next_ping_id_;
    uint32_t last_peer_stream_id_ = 0;
    uint32_t peer_initial_window_ = kDefaultWindow;
    uint32_t peer_max_streams_ = 0xffffffff;
    int64_t session_send_window_ = kDefaultWindow;
    int64_t session_recv_window_ = kDefaultWindow;
    size_t session_unacked_ = 0;  // consumed, not yet returned with WINDOW_UPDATE(0)
    // A DATA frame whose payload is still arriving.
    uint32_t data_stream_ = 0;
    size_t data_left_ = 0;
    uint8_t data_flags_ = 0;
    bool data_ignored_ = false;
};

}  // namespace crisd::stream::spdy
