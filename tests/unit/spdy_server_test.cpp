// The server-side stream mapping for exec/attach (RemoteCommandServer) and port forward
// (PortForwardServer), driven by a client-role Session that opens streams the way
// client-go does.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "stream/portforward_spdy.hpp"
#include "stream/remotecommand_spdy.hpp"

using namespace crisd::stream::spdy;

namespace {

// A client-go-like peer: opens streams, records what comes back.
struct Client {
    std::map<uint32_t, std::string> data;
    std::map<uint32_t, bool> fin, replied, reset;
    bool goaway = false;
    Session session{Role::Client, callbacks()};

    Callbacks callbacks() {
        Callbacks cb;
        cb.on_syn_stream = [](uint32_t, const Headers&, bool) {};
        cb.on_syn_reply = [this](uint32_t id, const Headers&, bool) { replied[id] = true; };
        cb.on_data = [this](uint32_t id, std::string_view d, bool f) {
            data[id].append(d);
            if (f) fin[id] = true;
        };
        cb.on_rst_stream = [this](uint32_t id, uint32_t) { reset[id] = true; };
        cb.on_goaway = [this](uint32_t, uint32_t) { goaway = true; };
        return cb;
    }
};

template <typename Server>
void shuttle(Client& c, Server& s) {
    for (int i = 0; i < 1000 && (c.session.wants_write() || s.wants_write()); ++i) {
        if (c.session.wants_write()) s.feed(c.session.take_output());
        if (s.wants_write()) c.session.feed(s.take_output());
    }
}

struct CommandLog {
    int ready = 0;
    std::string stdin_data;
    int stdin_closed = 0;
    std::string resize;
    int gone = 0;
    RemoteCommandServer::Callbacks callbacks() {
        RemoteCommandServer::Callbacks cb;
        cb.on_ready = [this] { ++ready; };
        cb.on_stdin = [this](std::string_view d) { stdin_data.append(d); };
        cb.on_stdin_closed = [this] { ++stdin_closed; };
        cb.on_resize = [this](std::string_view d) { resize.append(d); };
        cb.on_client_gone = [this] { ++gone; };
        return cb;
    }
};

const char* kExit3 =
    R"({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3",)"
    R"("reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}})";

}  // namespace

TEST(SpdyRemoteCommand, V4StreamsStdinOutputAndStatus) {
    CommandLog log;
    RemoteCommandServer srv("v4.channel.k8s.io", {true, true, true, false}, log.callbacks());
    EXPECT_EQ(srv.version(), 4);
    EXPECT_EQ(srv.expected_streams(), 4u);
    Client c;
    std::map<std::string, uint32_t> id;
    for (const char* t : {"error", "stdin", "stdout", "stderr"}) {
        EXPECT_EQ(log.ready, 0) << t;
        id[t] = c.session.open_stream({{"streamtype", t}}, false);
        shuttle(c, srv);
        EXPECT_TRUE(c.replied[id[t]]) << t;  // each stream answered before the next is opened
    }
    EXPECT_EQ(log.ready, 1);
    EXPECT_TRUE(srv.ready());

    c.session.send_data(id["stdin"], "input", true);
    shuttle(c, srv);
    EXPECT_EQ(log.stdin_data, "input");
    EXPECT_EQ(log.stdin_closed, 1);

    srv.write_stdout("out");
    srv.write_stderr("err");
    srv.finish(kExit3);
    shuttle(c, srv);
    EXPECT_EQ(c.data[id["stdout"]], "out");
    EXPECT_EQ(c.data[id["stderr"]], "err");
    EXPECT_EQ(c.data[id["error"]], kExit3);
    for (const char* t : {"error", "stdin", "stdout", "stderr"}) EXPECT_TRUE(c.fin[id[t]]) << t;
    EXPECT_TRUE(c.goaway);
    EXPECT_TRUE(srv.done());
}

TEST(SpdyRemoteCommand, TtyWantsResizeNotStderr) {
    CommandLog log;
    RemoteCommandServer srv("v4.channel.k8s.io", {true, true, true, true}, log.callbacks());
    EXPECT_EQ(srv.expected_streams(), 4u);  // error, stdin, stdout, resize
    Client c;
    uint32_t rs = 0;
    for (const char* t : {"error", "stdin", "stdout", "resize"}) {
        uint32_t i = c.session.open_stream({{"streamtype", t}}, false);
        if (std::string(t) == "resize") rs = i;
        shuttle(c, srv);
    }
    EXPECT_EQ(log.ready, 1);
    c.session.send_data(rs, "{\"Width\":80,\"Height\":24}\n", false);
    shuttle(c, srv);
    EXPECT_EQ(log.resize, "{\"Width\":80,\"Height\":24}\n");

    // v2 has no resize stream: a tty session needs only error, stdin, stdout.
    RemoteCommandServer v2("v2.channel.k8s.io", {true, true, false, true}, {});
    EXPECT_EQ(v2.expected_streams(), 3u);
    EXPECT_THROW(RemoteCommandServer("v9.channel.k8s.io", {}, {}), crisd::Error);
}

TEST(SpdyRemoteCommand, StdinClosedBeforeReadyIsReportedOnReady) {
    CommandLog log;
    RemoteCommandServer srv("v4.channel.k8s.io", {true, true, false, false}, log.callbacks());
    Client c;
    c.session.open_stream({{"streamtype", "error"}}, false);
    uint32_t in = c.session.open_stream({{"streamtype", "stdin"}}, false);
    c.session.send_data(in, "early", true);
    shuttle(c, srv);
    EXPECT_EQ(log.stdin_closed, 0);
    EXPECT_EQ(log.stdin_data, "early");
    c.session.open_stream({{"streamtype", "stdout"}}, false);
    shuttle(c, srv);
    EXPECT_EQ(log.ready, 1);
    EXPECT_EQ(log.stdin_closed, 1);
}

TEST(SpdyRemoteCommand, UnknownAndDuplicateStreamsAreRefused) {
    CommandLog log;
    RemoteCommandServer srv("v4.channel.k8s.io", {false, true, false, false}, log.callbacks());
    Client c;
    uint32_t odd = c.session.open_stream({{"streamtype", "bogus"}}, false);
    uint32_t e1 = c.session.open_stream({{"streamtype", "error"}}, false);
    uint32_t e2 = c.session.open_stream({{"streamtype", "error"}}, false);
    shuttle(c, srv);
    EXPECT_TRUE(c.reset[odd]);
    EXPECT_TRUE(c.replied[e1]);
    EXPECT_TRUE(c.reset[e2]);
    EXPECT_EQ(log.ready, 0);
    uint32_t out = c.session.open_stream({{"streamtype", "stdout"}}, false);
    shuttle(c, srv);
    EXPECT_EQ(log.ready, 1);
    // The client resetting a stream the command writes to means it went away.
    c.session.reset(out, rst::Cancel);
    shuttle(c, srv);
    EXPECT_EQ(log.gone, 1);
}

TEST(SpdyRemoteCommand, V1ClosesItsSideOfStdinAtOnce) {
    CommandLog log;
    RemoteCommandServer srv("channel.k8s.io", {true, true, false, false}, log.callbacks());
    Client c;
    c.session.open_stream({{"streamtype", "error"}}, false);
    uint32_t in = c.session.open_stream({{"streamtype", "stdin"}}, false);
    c.session.open_stream({{"streamtype", "stdout"}}, false);
    shuttle(c, srv);
    EXPECT_EQ(log.ready, 1);
    EXPECT_TRUE(c.fin[in]);
    EXPECT_EQ(log.stdin_closed, 0);  // the client may still write
    c.session.send_data(in, "x", false);
    shuttle(c, srv);
    EXPECT_EQ(log.stdin_data, "x");
}

namespace {

struct ForwardLog {
    std::vector<std::pair<uint32_t, uint16_t>> connects;
    std::map<uint32_t, std::string> data;
    std::map<uint32_t, bool> closed, cancelled;
    PortForwardServer::Callbacks callbacks() {
        PortForwardServer::Callbacks cb;
        cb.on_connect = [this](uint32_t r, uint16_t p) { connects.emplace_back(r, p); };
        cb.on_data = [this](uint32_t r, std::string_view d) { data[r].append(d); };
        cb.on_data_closed = [this](uint32_t r) { closed[r] = true; };
        cb.on_cancel = [this](uint32_t r) { cancelled[r] = true; };
        return cb;
    }
};

Headers pf(const std::string& type, const std::string& port, const std::string& rid) {
    Headers h{{"streamtype", type}, {"port", port}};
    if (!rid.empty()) h.emplace_back("requestid", rid);
    return h;
}

}  // namespace

TEST(SpdyPortForward, PairConnectsAndBytesFlowBothWays) {
    ForwardLog log;
    PortForwardServer srv(log.callbacks());
    Client c;
    uint32_t err = c.session.open_stream(pf("error", "8080", "0"), false);
    shuttle(c, srv);
    c.session.close_stream(err);  // client-go: "we're not writing to this stream"
    uint32_t data = c.session.open_stream(pf("data", "8080", "0"), false);
    shuttle(c, srv);
    ASSERT_EQ(log.connects.size(), 1u);
    EXPECT_EQ(log.connects[0], std::make_pair(data, uint16_t{8080}));
    c.session.send_data(data, "GET / HTTP/1.0\r\n\r\n", true);
    shuttle(c, srv);
    EXPECT_EQ(log.data[data], "GET / HTTP/1.0\r\n\r\n");
    EXPECT_TRUE(log.closed[data]);
    srv.send(data, "HTTP/1.0 200 OK\r\n\r\nhi");
    srv.close(data);
    shuttle(c, srv);
    EXPECT_EQ(c.data[data], "HTTP/1.0 200 OK\r\n\r\nhi");
    EXPECT_TRUE(c.fin[data]);
    EXPECT_TRUE(c.fin[err]);
    EXPECT_EQ(c.data[err], "");
    EXPECT_EQ(srv.active(), 0u);
}

TEST(SpdyPortForward, ConcurrentRequestsAndTheOldClientFallback) {
    ForwardLog log;
    PortForwardServer srv(log.callbacks());
    Client c;
    uint32_t e1 = c.session.open_stream(pf("error", "80", "1"), false);
    uint32_t e2 = c.session.open_stream(pf("error", "81", "2"), false);
    uint32_t d2 = c.session.open_stream(pf("data", "81", "2"), false);
    uint32_t d1 = c.session.open_stream(pf("data", "80", "1"), false);
    shuttle(c, srv);
    ASSERT_EQ(log.connects.size(), 2u);
    EXPECT_EQ(log.connects[0], std::make_pair(d2, uint16_t{81}));
    EXPECT_EQ(log.connects[1], std::make_pair(d1, uint16_t{80}));
    srv.fail(d1, "connection refused");
    shuttle(c, srv);
    EXPECT_EQ(c.data[e1], "connection refused");
    EXPECT_TRUE(c.fin[e1]);
    EXPECT_FALSE(c.fin[e2]);

    // No requestid: error stream id N pairs with data stream id N+2.
    uint32_t oe = c.session.open_stream(pf("error", "90", ""), false);
    uint32_t od = c.session.open_stream(pf("data", "90", ""), false);
    ASSERT_EQ(od, oe + 2);
    shuttle(c, srv);
    ASSERT_EQ(log.connects.size(), 3u);
    EXPECT_EQ(log.connects[2], std::make_pair(od, uint16_t{90}));

    // The client resetting a data stream cancels that connection only.
    c.session.reset(d2, rst::Cancel);
    shuttle(c, srv);
    EXPECT_TRUE(log.cancelled[d2]);
    EXPECT_FALSE(log.cancelled[od]);
}

TEST(SpdyPortForward, BadHeadersAreRefused) {
    ForwardLog log;
    PortForwardServer srv(log.callbacks());
    Client c;
    uint32_t a = c.session.open_stream(pf("data", "", "0"), false);
    uint32_t b = c.session.open_stream(pf("data", "0", "0"), false);
    uint32_t d = c.session.open_stream(pf("data", "70000", "0"), false);
    uint32_t e = c.session.open_stream(pf("stdin", "80", "0"), false);
    uint32_t f = c.session.open_stream(pf("data", "80x", "0"), false);
    shuttle(c, srv);
    for (uint32_t id : {a, b, d, e, f}) EXPECT_TRUE(c.reset[id]) << id;
    EXPECT_TRUE(log.connects.empty());
    // A second error stream for one request is an error reported on the first.
    uint32_t e1 = c.session.open_stream(pf("error", "80", "7"), false);
    uint32_t e2 = c.session.open_stream(pf("error", "80", "7"), false);
    shuttle(c, srv);
    EXPECT_TRUE(c.reset[e2]);
    EXPECT_NE(c.data[e1].find("error stream already assigned"), std::string::npos) << c.data[e1];
}

TEST(SpdyPortForward, IncompletePairsExpire) {
    ForwardLog log;
    auto now = PortForwardServer::Clock::now();
    PortForwardServer srv(log.callbacks(), {}, [&] { return now; });
    Client c;
    uint32_t err = c.session.open_stream(pf("error", "80", "0"), false);
    shuttle(c, srv);
    EXPECT_EQ(srv.expire(std::chrono::seconds(30)), 0u);
    now += std::chrono::seconds(31);
    EXPECT_EQ(srv.expire(std::chrono::seconds(30)), 1u);
    shuttle(c, srv);
    EXPECT_NE(c.data[err].find("timed out waiting for streams"), std::string::npos) << c.data[err];
    EXPECT_TRUE(c.fin[err]);
    EXPECT_TRUE(log.connects.empty());
}

// kubectl port-forward carries every forwarded connection (two streams) on
// one session: a browser behind it opens hundreds at once. Each pair is
// forgotten once both sides closed it, so the limit (2048 open peer streams)
// only bounds what is open at the same time.
TEST(SpdyPortForward, HundredsOfConcurrentConnectionsOnOneSession) {
    ForwardLog log;
    PortForwardServer srv(log.callbacks());
    Client c;
    for (int round = 0; round < 3; ++round) {
        log.connects.clear();
        std::vector<std::pair<uint32_t, uint32_t>> pairs;  // error, data
        for (int i = 0; i < 900; ++i) {
            const std::string rid = std::to_string(round * 1000 + i);
            uint32_t e = c.session.open_stream(pf("error", "8080", rid), false);
            c.session.close_stream(e);  // client-go closes its side of the error stream at once
            uint32_t d = c.session.open_stream(pf("data", "8080", rid), false);
            c.session.send_data(d, "req" + rid, false);
            pairs.emplace_back(e, d);
        }
        shuttle(c, srv);
        ASSERT_EQ(log.connects.size(), 900u) << "round " << round;
        EXPECT_EQ(srv.active(), 900u);
        for (std::size_t i = 0; i < pairs.size(); ++i) {
            const uint32_t d = pairs[i].second;
            EXPECT_FALSE(c.reset[d]) << d;
            EXPECT_EQ(log.data[d], "req" + std::to_string(round * 1000 + static_cast<int>(i)));
            srv.send(d, "resp");
            srv.close(d);
        }
        shuttle(c, srv);
        for (auto [e, d] : pairs) {
            EXPECT_EQ(c.data[d], "resp");
            EXPECT_TRUE(c.fin[d]);
            EXPECT_TRUE(c.fin[e]);
            c.session.close_stream(d);  // the local connection closed: client-go half-closes data
        }
        shuttle(c, srv);
        EXPECT_EQ(srv.active(), 0u);
        EXPECT_EQ(srv.session().open_streams(), 0u) << "closed streams are forgotten";
    }

    // Still bounded: past 2048 open peer streams, new ones are refused.
    std::vector<uint32_t> ids;
    for (int i = 0; i < 1025; ++i) {
        ids.push_back(c.session.open_stream(pf("error", "80", "x" + std::to_string(i)), false));
        ids.push_back(c.session.open_stream(pf("data", "80", "x" + std::to_string(i)), false));
    }
    shuttle(c, srv);
    EXPECT_EQ(srv.session().open_streams(), 2048u);
    EXPECT_FALSE(c.reset[ids[2047]]);
    EXPECT_TRUE(c.reset[ids[2048]]);
    EXPECT_TRUE(c.reset[ids[2049]]);
}
