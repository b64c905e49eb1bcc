// SPDY/3.1 session: frame layouts from the spec (draft-mbelshe-httpbis-spdy-00 and the
// 3.1 flow-control additions), header blocks compressed by a known peer (Chromium's
// SpdyFramer test vectors), the dictionary, and two Sessions talking through memory.
#include <gtest/gtest.h>

#include <zlib.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "stream/spdy.hpp"

using namespace crisd::stream::spdy;

namespace {

std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int c : b) s.push_back(static_cast<char>(c));
    return s;
}

std::string be32(uint32_t v) {
    return bytes({int(v >> 24 & 0xff), int(v >> 16 & 0xff), int(v >> 8 & 0xff), int(v & 0xff)});
}

std::string control(uint16_t type, uint8_t flags, const std::string& payload, uint16_t version = 3) {
    return bytes({0x80 | (version >> 8), version & 0xff, type >> 8, type & 0xff, flags}) +
           be32(static_cast<uint32_t>(payload.size())).substr(1) + payload;
}

std::string data_frame(uint32_t id, uint8_t flags, const std::string& payload) {
    return be32(id) + std::string(1, static_cast<char>(flags)) + be32(static_cast<uint32_t>(payload.size())).substr(1) + payload;
}

std::string hex(const std::string& s) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        out += d[c >> 4];
        out += d[c & 15];
        out += ' ';
    }
    return out;
}

// An independent header-block compressor (plain zlib, the spec's dictionary), standing
// in for a peer: its own context, kept across blocks like a real peer's.
class PeerDeflater {
public:
    PeerDeflater() {
        deflateInit(&zs_, Z_BEST_COMPRESSION);
        auto d = header_dictionary();
        deflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(d.data()), static_cast<uInt>(d.size()));
    }
    ~PeerDeflater() { deflateEnd(&zs_); }
    std::string block(const std::vector<std::pair<std::string, std::string>>& h) {
        std::string raw = be32(static_cast<uint32_t>(h.size()));
        for (auto& [n, v] : h) raw += be32(static_cast<uint32_t>(n.size())) + n + be32(static_cast<uint32_t>(v.size())) + v;
        return compress(raw);
    }
    std::string compress(const std::string& raw) {
        std::string out(raw.size() + 1024, '\0');
        zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
        zs_.avail_in = static_cast<uInt>(raw.size());
        zs_.next_out = reinterpret_cast<Bytef*>(out.data());
        zs_.avail_out = static_cast<uInt>(out.size());
        deflate(&zs_, Z_SYNC_FLUSH);
        out.resize(out.size() - zs_.avail_out);
        return out;
    }

private:
    z_stream zs_{};
};

std::string syn_stream(PeerDeflater& z, uint32_t id, const Headers& h, uint8_t flags = 0) {
    return control(1, flags, be32(id) + be32(0) + bytes({0, 0}) + z.block(h));
}

// Records every callback.
struct Recorder {
    struct Event {
        std::string kind;
        uint32_t id;
        Headers headers;
        std::string data;
        bool fin;
        uint32_t status;
    };
    std::vector<Event> events;
    std::map<uint32_t, std::string> received;
    std::map<uint32_t, bool> fin;

    Callbacks callbacks() {
        Callbacks cb;
        cb.on_syn_stream = [this](uint32_t id, const Headers& h, bool f) { events.push_back({"syn_stream", id, h, {}, f, 0}); };
        cb.on_syn_reply = [this](uint32_t id, const Headers& h, bool f) { events.push_back({"syn_reply", id, h, {}, f, 0}); };
        cb.on_headers = [this](uint32_t id, const Headers& h, bool f) { events.push_back({"headers", id, h, {}, f, 0}); };
        cb.on_data = [this](uint32_t id, std::string_view d, bool f) {
            received[id].append(d);
            if (f) fin[id] = true;
            events.push_back({"data", id, {}, std::string(d), f, 0});
        };
        cb.on_rst_stream = [this](uint32_t id, uint32_t s) { events.push_back({"rst", id, {}, {}, false, s}); };
        cb.on_goaway = [this](uint32_t id, uint32_t s) { events.push_back({"goaway", id, {}, {}, false, s}); };
        cb.on_ping_reply = [this](uint32_t id) { events.push_back({"ping_reply", id, {}, {}, false, 0}); };
        return cb;
    }
    size_t count(const std::string& kind) const {
        size_t n = 0;
        for (auto& e : events) n += e.kind == kind;
        return n;
    }
    const Event* last(const std::string& kind) const {
        for (auto it = events.rbegin(); it != events.rend(); ++it)
            if (it->kind == kind) return &*it;
        return nullptr;
    }
};

Options quiet() {
    Options o;
    o.announce_settings = false;
    return o;
}

// Moves bytes between two sessions until both are quiet.
void shuttle(Session& a, Session& b) {
    for (int i = 0; i < 1000 && (a.wants_write() || b.wants_write()); ++i) {
        if (a.wants_write()) b.feed(a.take_output());
        if (b.wants_write()) a.feed(b.take_output());
    }
}

}  // namespace

TEST(SpdyDictionary, SizeAndZlibDictionaryId) {
    auto d = header_dictionary();
    EXPECT_EQ(d.size(), 1423u);
    // The DICTID Chromium's and Firefox's SPDY/3 frames carry: 0xe3c6a7c2.
    uLong id = adler32(adler32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(d.data()), static_cast<uInt>(d.size()));
    EXPECT_EQ(id, 0xe3c6a7c2u);
    EXPECT_EQ(d.substr(0, 11), bytes({0, 0, 0, 7}) + "options");
    EXPECT_EQ(d.substr(d.size() - 7), ",enq=0.");
}

TEST(SpdyFrames, SettingsAnnouncedAtStart) {
    Options o;
    o.receive_window = 0x0a0b0c0d;
    Session s(Role::Server, {}, o);
    // SETTINGS, 1 entry: flags 0, id 7 (INITIAL_WINDOW_SIZE), value.
    EXPECT_EQ(hex(s.take_output()), hex(bytes({0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01,
                                               0x00, 0x00, 0x00, 0x07, 0x0a, 0x0b, 0x0c, 0x0d})));
}

TEST(SpdyFrames, SynStreamLayoutAndCompressedBlock) {
    Session c(Role::Client, {}, quiet());
    EXPECT_EQ(c.open_stream({{"streamtype", "error"}}, false), 1u);
    EXPECT_EQ(c.open_stream({{"streamtype", "stdout"}}, true), 3u);
    std::string out = c.take_output();
    ASSERT_GE(out.size(), 24u);
    EXPECT_EQ(hex(out.substr(0, 5)), hex(bytes({0x80, 0x03, 0x00, 0x01, 0x00})));  // no flags
    size_t len = (static_cast<unsigned char>(out[5]) << 16) | (static_cast<unsigned char>(out[6]) << 8) |
                 static_cast<unsigned char>(out[7]);
    EXPECT_EQ(hex(out.substr(8, 10)), hex(be32(1) + be32(0) + bytes({0, 0})));  // id, associated, pri, slot
    // zlib header: deflate, FDICT set, then the SPDY dictionary's id.
    EXPECT_EQ(out[18], 0x78);
    EXPECT_TRUE(out[19] & 0x20);
    EXPECT_EQ(hex(out.substr(20, 4)), hex(bytes({0xe3, 0xc6, 0xa7, 0xc2})));
    // The second frame carries FIN and no second zlib header (one context per direction).
    std::string second = out.substr(8 + len);
    EXPECT_EQ(hex(second.substr(0, 5)), hex(bytes({0x80, 0x03, 0x00, 0x01, 0x01})));
    EXPECT_EQ(hex(second.substr(8, 4)), hex(be32(3)));
    EXPECT_NE(second[18], 0x78);

    // A server decodes both.
    Recorder r;
    Session srv(Role::Server, r.callbacks(), quiet());
    srv.feed(out);
    ASSERT_EQ(r.count("syn_stream"), 2u);
    EXPECT_EQ(r.events[0].headers, (Headers{{"streamtype", "error"}}));
    EXPECT_FALSE(r.events[0].fin);
    EXPECT_EQ(r.events[1].headers, (Headers{{"streamtype", "stdout"}}));
    EXPECT_TRUE(r.events[1].fin);
}

TEST(SpdyFrames, ChromiumCompressedSynStream) {
    // SpdyFramerTest.CreateSynStreamCompressed: stream 1, priority 4, {bar: foo, foo: bar};
    // two encodings (zlib builds differ), both must decode with a fresh context.
    const std::string v1 = bytes({0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x37, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
                                  0x00, 0x00, 0x80, 0x00, 0x38, 0xEA, 0xE3, 0xC6, 0xA7, 0xC2, 0x02, 0xE5, 0x0E, 0x50,
                                  0xC2, 0x4B, 0x4A, 0x04, 0xE5, 0x0B, 0x66, 0x80, 0x00, 0x4A, 0xCB, 0xCF, 0x07, 0x08,
                                  0x20, 0x10, 0x95, 0x96, 0x9F, 0x0F, 0xA2, 0x00, 0x02, 0x28, 0x29, 0xB1, 0x08, 0x20,
                                  0x80, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF});
    const std::string v2 = bytes({0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
                                  0x00, 0x00, 0x80, 0x00, 0x38, 0xea, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xe5, 0x0e, 0x50,
                                  0xc2, 0x4b, 0x4a, 0x04, 0xe5, 0x0b, 0x66, 0x80, 0x00, 0x4a, 0xcb, 0xcf, 0x07, 0x08,
                                  0x20, 0x24, 0x0a, 0x20, 0x80, 0x92, 0x12, 0x8b, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00,
                                  0xff, 0xff});
    for (const auto& frame : {v1, v2}) {
        Recorder r;
        Session s(Role::Server, r.callbacks(), quiet());
        // Byte by byte: the parser must wait for whole frames.
        for (char c : frame) s.feed(std::string(1, c));
        ASSERT_EQ(r.count("syn_stream"), 1u);
        EXPECT_EQ(r.events[0].id, 1u);
        EXPECT_EQ(r.events[0].headers, (Headers{{"bar", "foo"}, {"foo", "bar"}}));
        EXPECT_FALSE(r.events[0].fin);
    }
}

TEST(SpdyFrames, ChromiumCompressedSynReply) {
    // SpdyFramerTest.CreateSynReplyCompressed: stream 1, {bar: foo, foo: bar}.
    const std::string reply = bytes({0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x31, 0x00, 0x00, 0x00, 0x01, 0x38, 0xea,
                                     0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xe5, 0x0e, 0x50, 0xc2, 0x4b, 0x4a, 0x04, 0xe5, 0x0b,
                                     0x66, 0x80, 0x00, 0x4a, 0xcb, 0xcf, 0x07, 0x08, 0x20, 0x10, 0x95, 0x96, 0x9f, 0x0f,
                                     0xa2, 0x00, 0x02, 0x28, 0x29, 0xb1, 0x08, 0x20, 0x80, 0x00, 0x00, 0x00, 0x00, 0xff,
                                     0xff});
    Recorder r;
    Session c(Role::Client, r.callbacks(), quiet());
    c.open_stream({{"streamtype", "data"}}, false);
    c.take_output();
    c.feed(reply);
    ASSERT_EQ(r.count("syn_reply"), 1u);
    EXPECT_EQ(r.events[0].headers, (Headers{{"bar", "foo"}, {"foo", "bar"}}));
}

TEST(SpdyFrames, RstGoawayWindowUpdateAndDataLayouts) {
    Recorder r;
    Session s(Role::Server, r.callbacks(), quiet());
    PeerDeflater z;
    s.feed(syn_stream(z, 1, {{"streamtype", "stdin"}}));
    s.reply(1, {}, false);
    s.take_output();

    s.send_data(1, "hello", true);
    EXPECT_EQ(hex(s.take_output()), hex(bytes({0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x05}) + "hello"));

    s.feed(syn_stream(z, 3, {{"streamtype", "stdout"}}));
    s.reset(3, rst::ProtocolError);
    EXPECT_EQ(hex(s.take_output()), hex(bytes({0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x03,
                                               0x00, 0x00, 0x00, 0x01})));
    EXPECT_FALSE(s.stream_open(3));

    // 32 KiB consumed on stream 1 (half the window) gives one WINDOW_UPDATE for the
    // session and one for the stream.
    s.feed(data_frame(1, 0, std::string(32 * 1024, 'x')));
    EXPECT_EQ(hex(s.take_output()),
              hex(control(9, 0, be32(0) + be32(32 * 1024)) + control(9, 0, be32(1) + be32(32 * 1024))));
    EXPECT_EQ(control(9, 0, be32(1) + be32(32 * 1024)).substr(0, 8),
              bytes({0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08}));

    s.goaway(goaway::Ok);
    EXPECT_EQ(hex(s.take_output()), hex(bytes({0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x03,
                                               0x00, 0x00, 0x00, 0x00})));
    EXPECT_TRUE(s.goaway_sent());
    EXPECT_THROW(s.open_stream({}, false), crisd::Error);
}

TEST(SpdyPing, PeerPingIsEchoedOwnPingIsReported) {
    Recorder r;
    Session c(Role::Client, r.callbacks(), quiet());
    // SpdyFramerTest.CreatePingFrame: id 0x12345678 (even: the server's).
    const std::string ping = bytes({0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x12, 0x34, 0x56, 0x78});
    c.feed(ping);
    EXPECT_EQ(hex(c.take_output()), hex(ping));
    EXPECT_EQ(r.count("ping_reply"), 0u);

    uint32_t id = c.ping();
    EXPECT_EQ(id, 1u);
    std::string mine = c.take_output();
    EXPECT_EQ(hex(mine), hex(control(6, 0, be32(1))));
    c.feed(mine);  // the server's echo
    EXPECT_FALSE(c.wants_write());
    ASSERT_EQ(r.count("ping_reply"), 1u);
    EXPECT_EQ(r.last("ping_reply")->id, 1u);

    Session s(Role::Server, {}, quiet());
    EXPECT_EQ(s.ping(), 2u);
    EXPECT_EQ(s.ping(), 4u);
}

TEST(SpdySession, ClientAndServerThroughMemory) {
    Recorder cr, sr;
    Session c(Role::Client, cr.callbacks());
    Session s(Role::Server, sr.callbacks());
    // The server replies with empty headers, as the kubelet does.
    uint32_t err = c.open_stream({{"streamtype", "error"}}, false);
    uint32_t in = c.open_stream({{"streamtype", "stdin"}, {"x-multi", "a"}, {"x-multi", "b"}}, false);
    shuttle(c, s);
    ASSERT_EQ(sr.count("syn_stream"), 2u);
    EXPECT_EQ(sr.events[1].headers, (Headers{{"streamtype", "stdin"}, {"x-multi", "a"}, {"x-multi", "b"}}));
    s.reply(err, {}, false);
    s.reply(in, {}, false);
    shuttle(c, s);
    EXPECT_EQ(cr.count("syn_reply"), 2u);
    EXPECT_TRUE(c.flow_control_active());  // both announced SETTINGS
    EXPECT_TRUE(s.flow_control_active());

    c.send_data(in, "line one\n", false);
    c.send_data(in, "line two\n", true);
    shuttle(c, s);
    EXPECT_EQ(sr.received[in], "line one\nline two\n");
    EXPECT_TRUE(sr.fin[in]);

    s.send_data(err, R"({"status":"Success"})", true);
    s.send_data(in, "", true);
    shuttle(c, s);
    EXPECT_EQ(cr.received[err], R"({"status":"Success"})");
    EXPECT_TRUE(cr.fin[err]);
    EXPECT_TRUE(cr.fin[in]);
    EXPECT_FALSE(s.stream_open(in));  // closed both ways: forgotten
    EXPECT_FALSE(c.stream_open(in));
    EXPECT_TRUE(s.stream_open(err));  // the client has not closed it yet
    c.close_stream(err);
    shuttle(c, s);
    EXPECT_EQ(s.open_streams(), 0u);
    EXPECT_EQ(c.open_streams(), 0u);

    c.goaway(goaway::Ok);
    shuttle(c, s);
    ASSERT_EQ(sr.count("goaway"), 1u);
    EXPECT_EQ(sr.last("goaway")->id, 0u);
    EXPECT_TRUE(s.goaway_received());
}

TEST(SpdyFlowControl, StallsAtTheWindowAndResumesOnConsumption) {
    Recorder cr, sr;
    Options so;
    so.auto_consume = false;  // the application says when it has used the data
    Session c(Role::Client, cr.callbacks());
    Session s(Role::Server, sr.callbacks(), so);
    uint32_t id = c.open_stream({{"streamtype", "stdin"}}, false);
    shuttle(c, s);
    s.reply(id, {}, false);
    shuttle(c, s);

    const std::string payload(200 * 1024, 'p');
    c.send_data(id, payload, true);
    shuttle(c, s);
    EXPECT_EQ(sr.received[id].size(), kDefaultWindow);  // stalled at the 64 KiB window
    EXPECT_EQ(c.queued_bytes(), payload.size() - kDefaultWindow);
    EXPECT_EQ(c.send_window(id), 0);
    EXPECT_EQ(c.send_window(0), 0);

    // Consuming less than half a window sends nothing yet.
    s.consumed(id, 1000);
    EXPECT_FALSE(s.wants_write());
    // Consume the rest as it arrives, until everything is through.
    size_t done = 1000;
    for (int i = 0; i < 100 && done < payload.size(); ++i) {
        size_t have = sr.received[id].size();
        s.consumed(id, have - done);
        done = have;
        shuttle(c, s);
    }
    EXPECT_EQ(sr.received[id], payload);
    EXPECT_TRUE(sr.fin[id]);
    EXPECT_EQ(c.queued_bytes(), 0u);
}

TEST(SpdyFlowControl, InitialWindowSettingResizesOpenStreams) {
    Recorder r;
    Session c(Role::Client, r.callbacks(), quiet());
    uint32_t id = c.open_stream({{"streamtype", "data"}}, false);
    c.take_output();
    EXPECT_EQ(c.send_window(id), kDefaultWindow);
    // The peer lowers SETTINGS_INITIAL_WINDOW_SIZE to 1000: open streams shrink by the
    // difference (section 2.6.8), and the peer now counts as speaking flow control.
    c.feed(control(4, 0, be32(1) + be32(setting::InitialWindowSize) + be32(1000)));
    EXPECT_EQ(c.send_window(id), 1000);
    EXPECT_TRUE(c.flow_control_active());
    c.send_data(id, std::string(5000, 'd'), false);
    EXPECT_EQ(hex(c.take_output()), hex(data_frame(id, 0, std::string(1000, 'd'))));
    EXPECT_EQ(c.queued_bytes(id), 4000u);
    c.feed(control(9, 0, be32(id) + be32(4000)));
    EXPECT_EQ(c.take_output().size(), 8u + 4000);
    EXPECT_EQ(c.queued_bytes(), 0u);
    EXPECT_EQ(c.send_window(0), kDefaultWindow - 5000);
    // A FIN with no data goes out even at a zero window.
    c.send_data(id, "", true);
    EXPECT_EQ(hex(c.take_output()), hex(data_frame(id, 1, "")));
}

TEST(SpdyFlowControl, AutoModeDoesNotStallAPeerWithoutFlowControl) {
    // moby/spdystream (kubectl, the kubelet, the API server) sends no SETTINGS and no
    // WINDOW_UPDATE. In Auto mode everything goes out; nothing waits for a window.
    Recorder r;
    Session s(Role::Server, r.callbacks());
    s.take_output();
    PeerDeflater z;
    s.feed(syn_stream(z, 1, {{"streamtype", "stdout"}}));
    s.reply(1, {}, false);
    const std::string big(1024 * 1024, 'o');
    s.send_data(1, big, true);
    EXPECT_FALSE(s.flow_control_active());
    EXPECT_EQ(s.queued_bytes(), 0u);
    EXPECT_GT(s.output_bytes(), big.size());
    EXPECT_LT(s.send_window(1), 0);  // tracked, not enforced

    // Such a peer may also overrun our receive window: tolerated in Auto mode.
    s.feed(syn_stream(z, 3, {{"streamtype", "stdin"}}));
    s.reply(3, {}, false);
    s.feed(data_frame(3, 0, std::string(100 * 1024, 'i')));
    EXPECT_EQ(r.received[3].size(), 100u * 1024);
    EXPECT_EQ(r.count("rst"), 0u);

    // The same overrun against Enforce resets the stream with FLOW_CONTROL_ERROR...
    Options strict = quiet();
    strict.flow_control = FlowControl::Enforce;
    strict.auto_consume = false;
    strict.receive_window = 1000;
    Recorder r2;
    Session e(Role::Server, r2.callbacks(), strict);
    PeerDeflater z2;
    e.feed(syn_stream(z2, 1, {{"streamtype", "stdin"}}));
    e.reply(1, {}, false);
    e.take_output();
    e.feed(data_frame(1, 0, std::string(1001, 'i')));
    EXPECT_EQ(hex(e.take_output()), hex(control(3, 0, be32(1) + be32(rst::FlowControlError))));
    EXPECT_EQ(r2.received[1].size(), 0u);
    EXPECT_EQ(r2.last("rst")->status, rst::FlowControlError);
    // ...and an overrun of the session window is a session error.
    strict.receive_window = 1 << 20;  // streams may take 1 MiB, the session 64 KiB
    Session e2(Role::Server, {}, strict);
    PeerDeflater z3;
    e2.feed(syn_stream(z3, 1, {{"streamtype", "stdin"}}));
    e2.reply(1, {}, false);
    e2.feed(data_frame(1, 0, std::string(kDefaultWindow, 'i')));
    EXPECT_THROW(e2.feed(data_frame(1, 0, "!")), crisd::Error);
}

TEST(SpdyLimits, StreamsBeyondTheLimitAreRefused) {
    Options o = quiet();
    o.max_streams = 2;
    Recorder r;
    Session s(Role::Server, r.callbacks(), o);
    PeerDeflater z;
    std::string frames = syn_stream(z, 1, {{"streamtype", "a"}});
    frames += syn_stream(z, 3, {{"streamtype", "b"}});
    frames += syn_stream(z, 5, {{"streamtype", "c"}});
    s.feed(frames);
    EXPECT_EQ(r.count("syn_stream"), 2u);
    EXPECT_EQ(hex(s.take_output()), hex(control(3, 0, be32(5) + be32(rst::RefusedStream))));
    // The refused stream's header block was still inflated: the next one decodes.
    s.reset(1, rst::Cancel);
    s.take_output();
    s.feed(syn_stream(z, 7, {{"streamtype", "d"}}));
    ASSERT_EQ(r.count("syn_stream"), 3u);
    EXPECT_EQ(r.last("syn_stream")->headers, (Headers{{"streamtype", "d"}}));
}

TEST(SpdyBadInput, TruncatedFrameWaitsThenParses) {
    Recorder r;
    Session s(Role::Server, r.callbacks(), quiet());
    PeerDeflater z;
    std::string f = syn_stream(z, 1, {{"streamtype", "error"}});
    s.feed(f.substr(0, 7));
    s.feed(f.substr(7, 5));
    EXPECT_EQ(r.count("syn_stream"), 0u);
    s.feed(f.substr(12));
    EXPECT_EQ(r.count("syn_stream"), 1u);
    // DATA delivered as it arrives, FIN with the last piece.
    s.reply(1, {}, false);
    std::string d = data_frame(1, 1, "abcdef");
    s.feed(d.substr(0, 10));
    s.feed(d.substr(10));
    EXPECT_EQ(r.received[1], "abcdef");
    EXPECT_TRUE(r.fin[1]);
    const auto* last = r.last("data");
    EXPECT_TRUE(last->fin);
}

TEST(SpdyBadInput, BadVersionIsAProtocolError) {
    Session s(Role::Server, {}, quiet());
    try {
        s.feed(control(4, 0, be32(1), 2));  // a SPDY/2 SETTINGS
        FAIL() << "no error";
    } catch (const crisd::Error& e) {
        EXPECT_EQ(e.code(), crisd::Code::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("unsupported SPDY version 2"), std::string::npos) << e.what();
    }
    // GOAWAY(PROTOCOL_ERROR) is queued for the caller to write.
    EXPECT_EQ(hex(s.take_output()), hex(control(7, 0, be32(0) + be32(goaway::ProtocolError))));
    EXPECT_THROW(s.feed(""), crisd::Error);  // the session is dead
}

TEST(SpdyBadInput, UnknownControlTypeIsIgnored) {
    Recorder r;
    Session s(Role::Server, r.callbacks(), quiet());
    // proxygen's SPDYCodecTest.BadType: type 0x0a, 5 bytes of payload.
    s.feed(bytes({0x80, 0x03, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00}));
    EXPECT_TRUE(r.events.empty());
    EXPECT_FALSE(s.wants_write());
    PeerDeflater z;
    s.feed(syn_stream(z, 1, {{"streamtype", "error"}}));
    EXPECT_EQ(r.count("syn_stream"), 1u);
}

TEST(SpdyBadInput, InflateFailure) {
    Session s(Role::Server, {}, quiet());
    // A header block that is not a zlib stream.
    std::string bad = control(1, 0, be32(1) + be32(0) + bytes({0, 0}) + "this is not zlib");
    EXPECT_THROW(s.feed(bad), crisd::Error);

    // A zlib stream with another dictionary.
    Session s2(Role::Server, {}, quiet());
    z_stream zs{};
    deflateInit(&zs, 9);
    const char other[] = "some other dictionary";
    deflateSetDictionary(&zs, reinterpret_cast<const Bytef*>(other), sizeof other);
    std::string raw = be32(1) + be32(1) + "a" + be32(1) + "b";
    std::string out(256, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(raw.data());
    zs.avail_in = static_cast<uInt>(raw.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    deflate(&zs, Z_SYNC_FLUSH);
    out.resize(out.size() - zs.avail_out);
    deflateEnd(&zs);
    try {
        s2.feed(control(1, 0, be32(1) + be32(0) + bytes({0, 0}) + out));
        FAIL() << "no error";
    } catch (const crisd::Error& e) {
        EXPECT_NE(std::string(e.what()).find("dictionary"), std::string::npos) << e.what();
    }
}

TEST(SpdyBadInput, DecompressionBombIsRefused) {
    Session s(Role::Server, {}, quiet());
    PeerDeflater z;
    // 4 MiB of 'a' compresses to a few KiB; the limit is 256 KiB after inflate.
    std::string block = z.block({{"x", std::string(4 * 1024 * 1024, 'a')}});
    ASSERT_LT(block.size(), 64u * 1024);
    try {
        s.feed(control(1, 0, be32(1) + be32(0) + bytes({0, 0}) + block));
        FAIL() << "no error";
    } catch (const crisd::Error& e) {
        EXPECT_NE(std::string(e.what()).find("after inflate"), std::string::npos) << e.what();
    }
}

TEST(SpdyBadInput, OversizedFramesAndMalformedHeaderBlocks) {
    Options o = quiet();
    o.max_control_frame = 1024;
    o.max_data_frame = 4096;
    Session s(Role::Server, {}, o);
    // Only the 8-byte header is needed to refuse it.
    EXPECT_THROW(s.feed(bytes({0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x10, 0x00})), crisd::Error);

    Session d(Role::Server, {}, o);
    EXPECT_THROW(d.feed(bytes({0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00})), crisd::Error);

    // A header block that claims more bytes than it holds.
    Session h(Role::Server, {}, quiet());
    PeerDeflater z;
    std::string raw = be32(1) + be32(100) + "short";
    EXPECT_THROW(h.feed(control(1, 0, be32(1) + be32(0) + bytes({0, 0}) + z.compress(raw))), crisd::Error);

    // Fixed-size frames with the wrong size.
    Session p(Role::Server, {}, quiet());
    EXPECT_THROW(p.feed(control(6, 0, be32(1) + "x")), crisd::Error);
    Session w(Role::Server, {}, quiet());
    EXPECT_THROW(w.feed(control(9, 0, be32(1))), crisd::Error);
}

TEST(SpdyBadInput, StreamIdRules) {
    // A client-initiated id must be odd and increasing.
    Session even(Role::Server, {}, quiet());
    PeerDeflater z1;
    EXPECT_THROW(even.feed(syn_stream(z1, 2, {{"a", "b"}})), crisd::Error);

    Session back(Role::Server, {}, quiet());
    PeerDeflater z2;
    back.feed(syn_stream(z2, 5, {{"a", "b"}}));
    EXPECT_THROW(back.feed(syn_stream(z2, 3, {{"a", "b"}})), crisd::Error);

    // DATA on a stream never opened: RST_STREAM(INVALID_STREAM), the session goes on.
    Recorder r;
    Session s(Role::Server, r.callbacks(), quiet());
    s.feed(data_frame(9, 0, "stray"));
    EXPECT_EQ(hex(s.take_output()), hex(control(3, 0, be32(9) + be32(rst::InvalidStream))));
    EXPECT_EQ(r.count("data"), 0u);
    // DATA on a stream that was open and is gone (reset by us) is dropped quietly.
    PeerDeflater z3;
    s.feed(syn_stream(z3, 1, {{"a", "b"}}));
    s.reset(1, rst::Cancel);
    s.take_output();
    s.feed(data_frame(1, 0, "late"));
    EXPECT_FALSE(s.wants_write());
    EXPECT_EQ(r.count("data"), 0u);
}

TEST(SpdySession, PeerResetIsReportedAndLaterSendsAreDropped) {
    Recorder r;
    Session s(Role::Server, r.callbacks(), quiet());
    PeerDeflater z;
    s.feed(syn_stream(z, 1, {{"streamtype", "stdout"}}));
    s.reply(1, {}, false);
    s.take_output();
    s.feed(control(3, 0, be32(1) + be32(rst::Cancel)));
    ASSERT_EQ(r.count("rst"), 1u);
    EXPECT_EQ(r.last("rst")->status, rst::Cancel);
    s.send_data(1, "nobody listens", true);
    EXPECT_FALSE(s.wants_write());
    EXPECT_NO_THROW(s.reply(1, {}, false));  // a gone stream: no-op
    EXPECT_FALSE(s.wants_write());
}

TEST(SpdyFuzz, MutatedInputOnlyEverThrowsCrisdError) {
    // A realistic client byte stream: SETTINGS, streams, data, ping, window updates,
    // a reset, HEADERS and GOAWAY.
    Session c(Role::Client, {});
    uint32_t a = c.open_stream({{"streamtype", "error"}}, false);
    uint32_t b = c.open_stream({{"streamtype", "stdin"}, {"x", "1"}, {"x", "2"}}, false);
    c.send_data(b, std::string(70000, 'z'), false);
    c.ping();
    c.send_headers(a, {{"trailer", "t"}}, false);
    c.send_data(a, "bye", true);
    c.reset(b, rst::Cancel);
    c.goaway(goaway::Ok);
    const std::string base = c.take_output() + control(9, 0, be32(0) + be32(1000)) +
                             bytes({0x80, 0x03, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x01, 0x00});

    std::mt19937 rng(12345);
    size_t thrown = 0, clean = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        std::string in = base;
        int flips = 1 + static_cast<int>(rng() % 8);
        for (int i = 0; i < flips; ++i) in[rng() % in.size()] = static_cast<char>(rng());
        if (iter % 5 == 0) in.resize(rng() % in.size());  // truncation too
        Session* sp = nullptr;
        Callbacks cb;
        cb.on_syn_stream = [&](uint32_t id, const Headers&, bool) {
            sp->reply(id, {}, false);
            sp->send_data(id, "x", false);
        };
        cb.on_data = [&](uint32_t id, std::string_view, bool fin) {
            if (fin) sp->send_data(id, "", true);
        };
        Options o;
        o.flow_control = iter % 2 ? FlowControl::Enforce : FlowControl::Auto;
        Session s(Role::Server, cb, o);
        sp = &s;
        try {
            size_t at = 0;
            while (at < in.size()) {
                size_t n = 1 + rng() % 4096;
                s.feed(std::string_view(in).substr(at, n));
                at += n;
            }
            ++clean;
        } catch (const crisd::Error&) {
            ++thrown;  // a protocol error: fine; anything else fails the test
        }
        s.take_output();
    }
    EXPECT_GT(thrown, 0u);
    EXPECT_GT(clean, 0u);
}
