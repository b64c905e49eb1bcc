#include "stream/spdy.hpp"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <set>

#include "common/error.hpp"

namespace crisd::stream::spdy {

namespace {

constexpr uint16_t kVersion = 3;
constexpr uint8_t kFlagFin = 0x01;
constexpr uint8_t kFlagUnidirectional = 0x02;
constexpr size_t kFrameHeader = 8;
constexpr size_t kMaxFrameLength = 0xffffff;

uint32_t get32(std::string_view s, size_t at) {
    auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[at + i])); };
    return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

void put32(std::string& s, uint32_t v) {
    s.push_back(static_cast<char>(v >> 24));
    s.push_back(static_cast<char>(v >> 16));
    s.push_back(static_cast<char>(v >> 8));
    s.push_back(static_cast<char>(v));
}

std::string build_dictionary() {
    // Section 2.6.10.1: length-prefixed header names and common values, then raw text.
    static const char* const words[] = {
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
        "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
        "cache-control", "connection", "content-base", "content-encoding", "content-language",
        "content-length", "content-location", "content-md5", "content-range", "content-type",
        "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
        "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
        "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
    };
    std::string d;
    for (const char* w : words) {
        std::string_view v(w);
        put32(d, static_cast<uint32_t>(v.size()));
        d.append(v);
    }
    d.append(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,"
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.");
    return d;
}

[[noreturn]] void misuse(Code code, const std::string& message) {
    throw Error(code, "spdy: " + message);
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

}  // namespace

std::string_view header_dictionary() {
    static const std::string dict = build_dictionary();
    return dict;
}

// ---------------------------------------------------------------------------------------
// zlib contexts: one per direction per session, with the SPDY dictionary.

class Session::Deflater {
public:
    Deflater() {
        if (deflateInit2(&zs_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            misuse(Code::Internal, "deflateInit2 failed");
        auto dict = header_dictionary();
        if (deflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(dict.data()),
                                 static_cast<uInt>(dict.size())) != Z_OK) {
            deflateEnd(&zs_);
            misuse(Code::Internal, "deflateSetDictionary failed");
        }
    }
    ~Deflater() { deflateEnd(&zs_); }

    std::string deflate(std::string_view in) {
        std::string out;
        zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        zs_.avail_in = static_cast<uInt>(in.size());
        char buf[4096];
        do {
            zs_.next_out = reinterpret_cast<Bytef*>(buf);
            zs_.avail_out = sizeof buf;
            int rc = ::deflate(&zs_, Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_BUF_ERROR) misuse(Code::Internal, "deflate failed");
            out.append(buf, sizeof buf - zs_.avail_out);
        } while (zs_.avail_out == 0 || zs_.avail_in != 0);
        return out;
    }

private:
    z_stream zs_{};
};

class Session::Inflater {
public:
    Inflater() {
        if (inflateInit(&zs_) != Z_OK) misuse(Code::Internal, "inflateInit failed");
    }
    ~Inflater() { inflateEnd(&zs_); }

    // Empty error: ok.
    std::string inflate(std::string_view in, size_t limit, std::string& out) {
        zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        zs_.avail_in = static_cast<uInt>(in.size());
        char buf[4096];
        for (;;) {
            zs_.next_out = reinterpret_cast<Bytef*>(buf);
            zs_.avail_out = sizeof buf;
            int rc = ::inflate(&zs_, Z_SYNC_FLUSH);
            if (rc == Z_NEED_DICT) {
                auto dict = header_dictionary();
                if (inflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(dict.data()),
                                         static_cast<uInt>(dict.size())) != Z_OK)
                    return "header block asks for an unknown zlib dictionary (not SPDY/3's)";
                continue;
            }
            size_t produced = sizeof buf - zs_.avail_out;
            out.append(buf, produced);
            if (out.size() > limit)
                return "header block exceeds " + std::to_string(limit) + " bytes after inflate";
            if (rc == Z_STREAM_END) {
                if (zs_.avail_in != 0) return "data after the end of the header compression stream";
                return {};
            }
            if (rc == Z_BUF_ERROR) {
                if (zs_.avail_in == 0) return {};
                if (produced == 0) return "inflate made no progress";
                continue;
            }
            if (rc != Z_OK)
                return std::string("inflate failed: ") + (zs_.msg ? zs_.msg : "error " + std::to_string(rc));
            if (zs_.avail_in == 0 && zs_.avail_out != 0) return {};
        }
    }

private:
    z_stream zs_{};
};

// ---------------------------------------------------------------------------------------

struct Session::Stream {
    bool peer_initiated = false;
    bool local_closed = false;   // FIN sent (or the stream is unidirectional toward us)
    bool remote_closed = false;  // FIN received
    bool fin_queued = false;     // FIN requested, not yet written (data ahead of it)
    bool replied = false;        // SYN_REPLY sent (peer's stream) or received (ours)
    int64_t send_window = kDefaultWindow;
    int64_t recv_window = kDefaultWindow;
    size_t unacked = 0;  // consumed, not yet returned with WINDOW_UPDATE
    std::deque<std::string> queue;
    size_t head_offset = 0;
    size_t queued = 0;
};

Session::Session(Role role, Callbacks callbacks, Options options)
    : role_(role),
      cb_(std::move(callbacks)),
      opt_(options),
      deflater_(std::make_unique<Deflater>()),
      inflater_(std::make_unique<Inflater>()),
      next_stream_id_(role == Role::Client ? 1 : 2),
      next_ping_id_(role == Role::Client ? 1 : 2) {
    if (opt_.receive_window == 0 || opt_.receive_window > kMaxWindow)
        misuse(Code::InvalidArgument, "receive window must be 1..2^31-1");
    if (opt_.send_frame_size == 0 || opt_.send_frame_size > kMaxFrameLength)
        misuse(Code::InvalidArgument, "send frame size must be 1..2^24-1");
    if (opt_.announce_settings || opt_.receive_window != kDefaultWindow) {
        std::string p;
        put32(p, 1);
        put32(p, setting::InitialWindowSize);  // flags 0
        put32(p, opt_.receive_window);
        write_control(FrameType::Settings, 0, p);
    }
}

Session::~Session() = default;

bool Session::is_peer_id(uint32_t id) const {
    bool odd = (id & 1) != 0;
    return role_ == Role::Server ? odd : !odd;
}

Session::Stream* Session::find(uint32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : &it->second;
}

const Session::Stream* Session::find(uint32_t id) const {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : &it->second;
}

bool Session::flow_control_active() const {
    switch (opt_.flow_control) {
    case FlowControl::Enforce: return true;
    case FlowControl::Off: return false;
    case FlowControl::Auto: return peer_flow_control_;
    }
    return false;
}

void Session::fail(const std::string& message) {
    if (!goaway_sent_) {
        std::string p;
        put32(p, last_peer_stream_id_);
        put32(p, goaway::ProtocolError);
        write_control(FrameType::GoAway, 0, p);
        goaway_sent_ = true;
    }
    dead_ = true;
    throw Error(Code::InvalidArgument, "spdy: " + message);
}

// ---------------------------------------------------------------------------------------
// Output

void Session::write_control(FrameType type, uint8_t flags, std::string_view payload) {
    out_.push_back(static_cast<char>(0x80));
    out_.push_back(static_cast<char>(kVersion));
    out_.push_back(static_cast<char>(static_cast<uint16_t>(type) >> 8));
    out_.push_back(static_cast<char>(static_cast<uint16_t>(type) & 0xff));
    put32(out_, static_cast<uint32_t>(flags) << 24 | static_cast<uint32_t>(payload.size()));
    out_.append(payload);
}

void Session::write_data_frame(uint32_t id, uint8_t flags, std::string_view data) {
    put32(out_, id & 0x7fffffff);
    put32(out_, static_cast<uint32_t>(flags) << 24 | static_cast<uint32_t>(data.size()));
    out_.append(data);
}

void Session::write_rst(uint32_t id, uint32_t status) {
    std::string p;
    put32(p, id & 0x7fffffff);
    put32(p, status);
    write_control(FrameType::RstStream, 0, p);
}

void Session::write_window_update(uint32_t id, uint32_t delta) {
    std::string p;
    put32(p, id & 0x7fffffff);
    put32(p, delta & 0x7fffffff);
    write_control(FrameType::WindowUpdate, 0, p);
}

std::string Session::encode_headers(const Headers& headers) {
    // Repeated names go out as one name with NUL-separated values, in first-seen order.
    std::vector<std::pair<std::string, std::string>> merged;
    for (const auto& [name, value] : headers) {
        std::string n = lower(name);
        if (n.empty()) misuse(Code::InvalidArgument, "empty header name");
        auto it = std::find_if(merged.begin(), merged.end(), [&](const auto& p) { return p.first == n; });
        if (it == merged.end()) {
            merged.emplace_back(std::move(n), value);
        } else {
            it->second.push_back('\0');
            it->second.append(value);
        }
    }
    std::string block;
    put32(block, static_cast<uint32_t>(merged.size()));
    for (const auto& [name, value] : merged) {
        put32(block, static_cast<uint32_t>(name.size()));
        block.append(name);
        put32(block, static_cast<uint32_t>(value.size()));
        block.append(value);
    }
    return deflater_->deflate(block);
}

std::string Session::take_output() {
    std::string out;
    out.swap(out_);
    return out;
}

bool Session::wants_write() const { return !out_.empty(); }

size_t Session::output_bytes() const { return out_.size(); }

uint32_t Session::open_stream(const Headers& headers, bool fin) {
    if (dead_) misuse(Code::FailedPrecondition, "session failed");
    if (goaway_sent_ || goaway_received_) misuse(Code::FailedPrecondition, "session is going away");
    if (next_stream_id_ > kMaxStreamId) misuse(Code::ResourceExhausted, "stream ids exhausted");
    size_t ours = 0;
    for (const auto& [id, s] : streams_)
        if (!s.peer_initiated) ++ours;
    if (ours >= peer_max_streams_)
        misuse(Code::ResourceExhausted, "peer allows " + std::to_string(peer_max_streams_) + " streams");
    uint32_t id = next_stream_id_;
    std::string block = encode_headers(headers);
    next_stream_id_ += 2;
    std::string p;
    put32(p, id);
    put32(p, 0);  // associated-to-stream-id
    p.push_back(0);  // priority 0 (highest), as spdystream sends
    p.push_back(0);  // slot
    p.append(block);
    write_control(FrameType::SynStream, fin ? kFlagFin : 0, p);
    Stream s;
    s.send_window = peer_initial_window_;
    s.recv_window = opt_.receive_window;
    s.local_closed = fin;
    streams_.emplace(id, std::move(s));
    return id;
}

void Session::reply(uint32_t id, const Headers& headers, bool fin) {
    Stream* s = find(id);
    if (!s) return;  // reset or gone meanwhile
    if (!s->peer_initiated) misuse(Code::InvalidArgument, "reply on stream " + std::to_string(id) + " that we opened");
    if (s->replied) misuse(Code::FailedPrecondition, "stream " + std::to_string(id) + " already replied");
    std::string p;
    put32(p, id);
    p.append(encode_headers(headers));
    write_control(FrameType::SynReply, fin ? kFlagFin : 0, p);
    s->replied = true;
    if (fin) {
        s->local_closed = true;
        maybe_forget(id);
    }
}

void Session::send_headers(uint32_t id, const Headers& headers, bool fin) {
    Stream* s = find(id);
    if (!s) return;
    if (s->local_closed || s->fin_queued) misuse(Code::FailedPrecondition, "stream " + std::to_string(id) + " is half-closed");
    std::string p;
    put32(p, id);
    p.append(encode_headers(headers));
    write_control(FrameType::Headers, fin ? kFlagFin : 0, p);
    if (fin) {
        s->local_closed = true;
        maybe_forget(id);
    }
}

void Session::send_data(uint32_t id, std::string_view data, bool fin) {
    Stream* s = find(id);
    if (!s) return;  // reset or gone: data is dropped
    if (s->local_closed || s->fin_queued) {
        if (data.empty() && fin) return;  // a second half-close
        misuse(Code::FailedPrecondition, "stream " + std::to_string(id) + " is half-closed");
    }
    if (!data.empty()) {
        s->queue.emplace_back(data);
        s->queued += data.size();
    }
    if (fin) s->fin_queued = true;
    pump();
}

void Session::reset(uint32_t id, uint32_t status) {
    if (id == 0 || status == 0) misuse(Code::InvalidArgument, "RST_STREAM needs a stream id and a status");
    if (!find(id)) return;
    write_rst(id, status);
    streams_.erase(id);
}

void Session::goaway(uint32_t status) {
    if (goaway_sent_) return;
    std::string p;
    put32(p, last_peer_stream_id_);
    put32(p, status);
    write_control(FrameType::GoAway, 0, p);
    goaway_sent_ = true;
}

uint32_t Session::ping() {
    uint32_t id = next_ping_id_;
    next_ping_id_ = next_ping_id_ + 2 > kMaxStreamId ? (role_ == Role::Client ? 1 : 2) : next_ping_id_ + 2;
    std::string p;
    put32(p, id);
    write_control(FrameType::Ping, 0, p);
    return id;
}

void Session::consumed(uint32_t id, size_t bytes) { credit(id, bytes); }

void Session::credit(uint32_t id, size_t bytes) {
    if (bytes == 0) return;
    session_unacked_ += bytes;
    if (session_unacked_ >= kDefaultWindow / 2) {
        uint32_t delta = static_cast<uint32_t>(std::min<size_t>(session_unacked_, kMaxWindow));
        write_window_update(0, delta);
        session_recv_window_ += delta;
        session_unacked_ -= delta;
    }
    Stream* s = find(id);
    if (!s || s->remote_closed) return;  // the peer sends no more on it
    s->unacked += bytes;
    if (s->unacked >= opt_.receive_window / 2) {
        uint32_t delta = static_cast<uint32_t>(std::min<size_t>(s->unacked, kMaxWindow));
        write_window_update(id, delta);
        s->recv_window += delta;
        s->unacked -= delta;
    }
}

void Session::pump() {
    bool enforce = flow_control_active();
    std::vector<uint32_t> finished;
    bool progress = true;
    while (progress) {
        progress = false;
        for (auto& [id, s] : streams_) {
            if (s.local_closed) continue;
            if (!s.queue.empty()) {
                int64_t allow = static_cast<int64_t>(opt_.send_frame_size);
                if (enforce) allow = std::min({allow, s.send_window, session_send_window_});
                if (allow <= 0) continue;
                std::string& head = s.queue.front();
                size_t n = std::min(static_cast<size_t>(allow), head.size() - s.head_offset);
                std::string_view chunk(head.data() + s.head_offset, n);
                s.head_offset += n;
                bool last_chunk = s.head_offset == head.size() && s.queue.size() == 1;
                bool fin = last_chunk && s.fin_queued;
                write_data_frame(id, fin ? kFlagFin : 0, chunk);
                if (s.head_offset == head.size()) {
                    s.queue.pop_front();
                    s.head_offset = 0;
                }
                s.queued -= n;
                s.send_window -= static_cast<int64_t>(n);
                session_send_window_ -= static_cast<int64_t>(n);
                if (fin) {
                    s.fin_queued = false;
                    s.local_closed = true;
                    finished.push_back(id);
                }
                progress = true;
            } else if (s.fin_queued) {
                // An empty DATA frame with FIN needs no window.
                write_data_frame(id, kFlagFin, {});
                s.fin_queued = false;
                s.local_closed = true;
                finished.push_back(id);
            }
        }
    }
    for (uint32_t id : finished) maybe_forget(id);
}

void Session::maybe_forget(uint32_t id) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    const Stream& s = it->second;
    if (s.local_closed && s.remote_closed && s.queue.empty() && !s.fin_queued) streams_.erase(it);
}

size_t Session::queued_bytes() const {
    size_t n = 0;
    for (const auto& [id, s] : streams_) n += s.queued;
    return n;
}

size_t Session::queued_bytes(uint32_t id) const {
    const Stream* s = find(id);
    return s ? s->queued : 0;
}

bool Session::stream_open(uint32_t id) const { return find(id) != nullptr; }

size_t Session::open_streams() const { return streams_.size(); }

int64_t Session::send_window(uint32_t id) const {
    if (id == 0) return session_send_window_;
    const Stream* s = find(id);
    return s ? s->send_window : 0;
}

// ---------------------------------------------------------------------------------------
// Input

void Session::feed(std::string_view bytes) {
    if (dead_) misuse(Code::FailedPrecondition, "session failed earlier");
    in_.append(bytes);
    if (parsing_) return;  // fed from a callback: the running parse() goes on with it
    parsing_ = true;
    try {
        parse();
    } catch (...) {
        parsing_ = false;
        throw;
    }
    parsing_ = false;
    in_.erase(0, in_pos_);  // once per feed, not once per frame
    in_pos_ = 0;
}

void Session::parse() {
    while (!dead_) {
        const size_t avail = in_.size() - in_pos_;
        if (data_left_ > 0) {
            if (avail == 0) return;
            size_t n = std::min(avail, data_left_);
            std::string chunk = in_.substr(in_pos_, n);
            in_pos_ += n;
            data_left_ -= n;
            on_data_bytes(chunk, data_left_ == 0);
            continue;
        }
        if (avail < kFrameHeader) return;
        uint32_t w0 = get32(in_, in_pos_);
        uint32_t w1 = get32(in_, in_pos_ + 4);
        uint8_t flags = static_cast<uint8_t>(w1 >> 24);
        size_t length = w1 & 0xffffff;
        if (w0 & 0x80000000) {
            uint16_t version = static_cast<uint16_t>((w0 >> 16) & 0x7fff);
            uint16_t type = static_cast<uint16_t>(w0 & 0xffff);
            if (version != kVersion)
                fail("unsupported SPDY version " + std::to_string(version) + " (only 3 is spoken)");
            if (length > opt_.max_control_frame)
                fail("control frame of " + std::to_string(length) + " bytes exceeds the limit of " +
                     std::to_string(opt_.max_control_frame));
            if (avail < kFrameHeader + length) return;
            std::string payload = in_.substr(in_pos_ + kFrameHeader, length);
            in_pos_ += kFrameHeader + length;
            parse_control(version, type, flags, payload);
        } else {
            uint32_t id = w0 & 0x7fffffff;
            if (id == 0) fail("DATA frame on stream 0");
            if (length > opt_.max_data_frame)
                fail("DATA frame of " + std::to_string(length) + " bytes exceeds the limit of " +
                     std::to_string(opt_.max_data_frame));
            in_pos_ += kFrameHeader;
            data_stream_ = id;
            data_flags_ = flags;
            data_left_ = length;
            data_ignored_ = false;

            // Flow-control accounting happens for the whole frame up front.
            bool enforce = flow_control_active();
            session_recv_window_ -= static_cast<int64_t>(length);
            if (enforce && session_recv_window_ < 0) fail("peer overran the session flow-control window");
            Stream* s = find(id);
            if (!s) {
                bool known = is_peer_id(id) ? id <= last_peer_stream_id_ : id < next_stream_id_;
                if (!known && !goaway_sent_) write_rst(id, rst::InvalidStream);
                data_ignored_ = true;
            } else if (s->remote_closed) {
                write_rst(id, rst::StreamAlreadyClosed);
                streams_.erase(id);
                data_ignored_ = true;
            } else {
                s->recv_window -= static_cast<int64_t>(length);
                if (enforce && s->recv_window < 0) {
                    write_rst(id, rst::FlowControlError);
                    streams_.erase(id);
                    if (cb_.on_rst_stream) cb_.on_rst_stream(id, rst::FlowControlError);
                    data_ignored_ = true;
                }
            }
            if (data_ignored_) credit(0, length);  // give the session window back at once
            if (length == 0) on_data_bytes({}, true);
        }
    }
}

void Session::on_data_bytes(std::string_view bytes, bool last) {
    uint32_t id = data_stream_;
    if (data_ignored_) return;
    bool fin = last && (data_flags_ & kFlagFin);
    if (bytes.empty() && !fin) return;
    Stream* s = find(id);
    if (!s) {  // reset in an earlier callback: the rest of the frame is dropped
        credit(0, bytes.size() + data_left_);
        data_ignored_ = true;
        return;
    }
    if (fin) s->remote_closed = true;
    if (cb_.on_data) cb_.on_data(id, bytes, fin);
    if (opt_.auto_consume) credit(id, bytes.size());
    if (fin) maybe_forget(id);
}

Headers Session::decode_headers(std::string_view compressed) {
    std::string block;
    std::string err = inflater_->inflate(compressed, opt_.max_header_block, block);
    if (!err.empty()) fail(err);
    std::string_view b(block);
    auto need = [&](size_t at, size_t n) {
        if (b.size() < at || b.size() - at < n) fail("truncated header block");
    };
    need(0, 4);
    uint32_t count = get32(b, 0);
    if (count > opt_.max_headers)
        fail("header block has " + std::to_string(count) + " headers, more than " + std::to_string(opt_.max_headers));
    size_t at = 4;
    Headers headers;
    for (uint32_t i = 0; i < count; ++i) {
        need(at, 4);
        uint32_t nlen = get32(b, at);
        at += 4;
        need(at, nlen);
        std::string name = lower(std::string(b.substr(at, nlen)));
        at += nlen;
        if (name.empty()) fail("empty header name");
        need(at, 4);
        uint32_t vlen = get32(b, at);
        at += 4;
        need(at, vlen);
        std::string_view value = b.substr(at, vlen);
        at += vlen;
        // Several values of one name are NUL-separated.
        size_t start = 0;
        for (;;) {
            size_t nul = value.find('\0', start);
            headers.emplace_back(name, std::string(value.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start)));
            if (headers.size() > opt_.max_headers) fail("too many header values");
            if (nul == std::string_view::npos) break;
            start = nul + 1;
        }
    }
    if (at != b.size()) fail("garbage after the header block");
    return headers;
}

bool Session::parse_control(uint16_t, uint16_t type, uint8_t flags, std::string_view p) {
    auto need = [&](size_t n, const char* what) {
        if (p.size() < n) fail(std::string(what) + " frame too short (" + std::to_string(p.size()) + " bytes)");
    };
    bool fin = (flags & kFlagFin) != 0;
    switch (static_cast<FrameType>(type)) {
    case FrameType::SynStream: {
        need(10, "SYN_STREAM");
        uint32_t id = get32(p, 0) & 0x7fffffff;
        Headers headers = decode_headers(p.substr(10));  // always, to keep zlib in step
        if (id == 0) fail("SYN_STREAM with stream id 0");
        if (!is_peer_id(id))
            fail("SYN_STREAM " + std::to_string(id) + " has the wrong parity for a " +
                 (role_ == Role::Server ? "client" : "server") + "-initiated stream");
        if (id <= last_peer_stream_id_) {
            if (find(id)) {
                write_rst(id, rst::ProtocolError);
                streams_.erase(id);
                return true;
            }
            fail("SYN_STREAM " + std::to_string(id) + " is not above the last stream id " +
                 std::to_string(last_peer_stream_id_));
        }
        last_peer_stream_id_ = id;
        size_t theirs = 0;
        for (const auto& [sid, s] : streams_)
            if (s.peer_initiated) ++theirs;
        if (goaway_sent_ || theirs >= opt_.max_streams) {
            write_rst(id, rst::RefusedStream);
            return true;
        }
        Stream s;
        s.peer_initiated = true;
        s.send_window = peer_initial_window_;
        s.recv_window = opt_.receive_window;
        s.remote_closed = fin;
        s.local_closed = (flags & kFlagUnidirectional) != 0;
        streams_.emplace(id, std::move(s));
        if (cb_.on_syn_stream) cb_.on_syn_stream(id, headers, fin);
        return true;
    }
    case FrameType::SynReply: {
        need(4, "SYN_REPLY");
        uint32_t id = get32(p, 0) & 0x7fffffff;
        Headers headers = decode_headers(p.substr(4));
        Stream* s = find(id);
        if (!s || s->peer_initiated) {
            bool known = id != 0 && !is_peer_id(id) && id < next_stream_id_;
            if (!known) write_rst(id, rst::InvalidStream);
            return true;
        }
        if (s->replied) {
            write_rst(id, rst::StreamInUse);
            streams_.erase(id);
            if (cb_.on_rst_stream) cb_.on_rst_stream(id, rst::StreamInUse);
            return true;
        }
        s->replied = true;
        if (fin) s->remote_closed = true;
        if (cb_.on_syn_reply) cb_.on_syn_reply(id, headers, fin);
        if (fin) maybe_forget(id);
        return true;
    }
    case FrameType::Headers: {
        need(4, "HEADERS");
        uint32_t id = get32(p, 0) & 0x7fffffff;
        Headers headers = decode_headers(p.substr(4));
        Stream* s = find(id);
        if (!s) return true;
        if (fin) s->remote_closed = true;
        if (cb_.on_headers) cb_.on_headers(id, headers, fin);
        if (fin) maybe_forget(id);
        return true;
    }
    case FrameType::RstStream: {
        if (p.size() != 8) fail("RST_STREAM frame of " + std::to_string(p.size()) + " bytes (must be 8)");
        uint32_t id = get32(p, 0) & 0x7fffffff;
        uint32_t status = get32(p, 4);
        if (id == 0) fail("RST_STREAM on stream 0");
        if (status == 0) fail("RST_STREAM with status 0");
        if (streams_.erase(id) && cb_.on_rst_stream) cb_.on_rst_stream(id, status);
        return true;
    }
    case FrameType::Settings: {
        need(4, "SETTINGS");
        uint32_t n = get32(p, 0);
        if (p.size() != 4 + static_cast<size_t>(n) * 8) fail("SETTINGS frame length does not match its entry count");
        for (uint32_t i = 0; i < n; ++i) {
            uint32_t id = get32(p, 4 + i * 8) & 0xffffff;
            uint32_t value = get32(p, 8 + i * 8);
            if (id == setting::InitialWindowSize) {
                if (value > kMaxWindow) fail("SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
                int64_t delta = static_cast<int64_t>(value) - static_cast<int64_t>(peer_initial_window_);
                for (auto& [sid, s] : streams_) s.send_window += delta;
                peer_initial_window_ = value;
                peer_flow_control_ = true;
            } else if (id == setting::MaxConcurrentStreams) {
                peer_max_streams_ = value;
            }
        }
        pump();
        return true;
    }
    case FrameType::Ping: {
        if (p.size() != 4) fail("PING frame of " + std::to_string(p.size()) + " bytes (must be 4)");
        uint32_t id = get32(p, 0);
        bool ours = ((id & 1) != 0) == (role_ == Role::Client);
        if (!ours) {
            write_control(FrameType::Ping, 0, p);  // echo
        } else if (cb_.on_ping_reply) {
            cb_.on_ping_reply(id);
        }
        return true;
    }
    case FrameType::GoAway: {
        need(4, "GOAWAY");
        uint32_t last = get32(p, 0) & 0x7fffffff;
        uint32_t status = p.size() >= 8 ? get32(p, 4) : goaway::Ok;
        goaway_received_ = true;
        if (cb_.on_goaway) cb_.on_goaway(last, status);
        return true;
    }
    case FrameType::WindowUpdate: {
        if (p.size() != 8) fail("WINDOW_UPDATE frame of " + std::to_string(p.size()) + " bytes (must be 8)");
        uint32_t id = get32(p, 0) & 0x7fffffff;
        uint32_t delta = get32(p, 4) & 0x7fffffff;
        if (delta == 0) fail("WINDOW_UPDATE with a delta of 0");
        peer_flow_control_ = true;
        if (id == 0) {
            session_send_window_ += delta;
            if (session_send_window_ > kMaxWindow) fail("session send window above 2^31-1");
        } else if (Stream* s = find(id)) {
            s->send_window += delta;
            if (s->send_window > kMaxWindow) {
                write_rst(id, rst::FlowControlError);
                streams_.erase(id);
                if (cb_.on_rst_stream) cb_.on_rst_stream(id, rst::FlowControlError);
            }
        }
        pump();
        return true;
    }
    }
    return false;  // unknown control frame: ignored, as section 2.2.1 says
}

}  // namespace crisd::stream::spdy
