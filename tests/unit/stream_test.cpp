// The streaming server's pure parts: single-use expiring tokens, subprotocol
// negotiation, WebSocket channel framing (binary and base64), the error
// stream's Status JSON, resize messages, port prefixes and query ports.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>

#include "stream/protocol.hpp"
#include "stream/tokens.hpp"

using namespace crisd::stream;
namespace p = crisd::stream::protocol;
using namespace std::chrono_literals;

TEST(StreamTokens, RandomUrlSafeAndUnique) {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        const auto t = random_token();
        EXPECT_EQ(t.size(), 22u);
        EXPECT_EQ(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                  std::string::npos);
        EXPECT_TRUE(seen.insert(t).second);
    }
}

TEST(StreamTokens, SingleUseExpiringAndBounded) {
    auto now = TokenCache<int>::Clock::time_point{};
    TokenCache<int> cache(60s, 3, [&] { return now; });
    const auto a = cache.insert(1);
    const auto b = cache.insert(2);
    EXPECT_NE(a, b);
    EXPECT_EQ(cache.consume(a), 1);
    EXPECT_EQ(cache.consume(a), std::nullopt) << "a token works once";
    EXPECT_EQ(cache.consume("unknown"), std::nullopt);
    now += 59s;
    EXPECT_EQ(cache.consume(b), 2);
    const auto c = cache.insert(3);
    now += 60s;
    EXPECT_EQ(cache.consume(c), std::nullopt) << "expired after the TTL";
    EXPECT_EQ(cache.size(), 0u);
    cache.insert(4);
    cache.insert(5);
    cache.insert(6);
    try {
        cache.insert(7);
        FAIL() << "a full cache refuses";
    } catch (const crisd::Error& e) {
        EXPECT_EQ(e.code(), crisd::Code::ResourceExhausted);
    }
    now += 61s;  // expired ones make room again
    EXPECT_NO_THROW(cache.insert(8));
}

TEST(StreamProtocol, WebSocketNegotiationFollowsTheClientsOrder) {
    auto p5 = p::negotiate_ws_remotecommand("v5.channel.k8s.io, v4.channel.k8s.io");
    ASSERT_TRUE(p5);
    EXPECT_EQ(p5->name, "v5.channel.k8s.io");
    EXPECT_EQ(p5->version, 5);
    auto p4 = p::negotiate_ws_remotecommand("v9.foo, v4.base64.channel.k8s.io,v5.channel.k8s.io");
    ASSERT_TRUE(p4);
    EXPECT_EQ(p4->name, "v4.base64.channel.k8s.io");
    EXPECT_TRUE(p4->base64);
    auto none = p::negotiate_ws_remotecommand("");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->name, "");
    EXPECT_EQ(none->version, 1);
    EXPECT_FALSE(p::negotiate_ws_remotecommand("v9.nothing"));
    EXPECT_FALSE(p::negotiate_ws_portforward("v5.channel.k8s.io"));
    EXPECT_EQ(p::negotiate_ws_portforward("v4.channel.k8s.io")->version, 4);
}

TEST(StreamProtocol, SpdyNegotiation) {
    EXPECT_EQ(p::negotiate_spdy_remotecommand({"v4.channel.k8s.io", "v3.channel.k8s.io"}), "v4.channel.k8s.io");
    EXPECT_EQ(p::negotiate_spdy_remotecommand({"v5.channel.k8s.io", "v2.channel.k8s.io"}), "v2.channel.k8s.io");
    EXPECT_EQ(p::negotiate_spdy_remotecommand({"v3.channel.k8s.io, channel.k8s.io"}), "v3.channel.k8s.io");
    EXPECT_EQ(p::negotiate_spdy_remotecommand({"portforward.k8s.io"}), "");
    EXPECT_EQ(p::spdy_version("v3.channel.k8s.io"), 3);
    EXPECT_EQ(p::spdy_version("channel.k8s.io"), 1);
    // Port forward: the exact name only (it used to be matched as a substring).
    EXPECT_EQ(p::negotiate_spdy_portforward({"portforward.k8s.io"}), "portforward.k8s.io");
    EXPECT_EQ(p::negotiate_spdy_portforward({"v9.portforward.k8s.io", "portforward.k8s.io"}), "portforward.k8s.io");
    EXPECT_EQ(p::negotiate_spdy_portforward({"v2.portforward.k8s.io"}), "");
    EXPECT_EQ(p::negotiate_spdy_portforward({"portforward.k8s.io.evil"}), "");
}

TEST(StreamProtocol, ChannelFraming) {
    const p::WsProtocol bin{"v4.channel.k8s.io", 4, false}, b64{"base64.channel.k8s.io", 1, true},
        v5{"v5.channel.k8s.io", 5, false};
    EXPECT_EQ(p::ws_encode(bin, 1, "hi"), std::string("\x01hi"));
    EXPECT_EQ(p::ws_encode(b64, 2, "hi"), "2aGk=");
    auto m = p::ws_decode(bin, std::string("\x00input", 6));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->channel, 0);
    EXPECT_EQ(m->data, "input");
    m = p::ws_decode(b64, "0aGVsbG8=");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->channel, 0);
    EXPECT_EQ(m->data, "hello");
    EXPECT_FALSE(p::ws_decode(b64, "0!!"));
    EXPECT_FALSE(p::ws_decode(bin, ""));
    // v5: {255, channel} closes a channel; earlier versions have no such thing.
    m = p::ws_decode(v5, std::string("\xff\x00", 2));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->channel, p::kStreamClose);
    EXPECT_EQ(m->data, std::string(1, '\0'));
    for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff\x10", 3)})
        EXPECT_EQ(p::base64_decode(p::base64_encode(s)), s);
    EXPECT_EQ(p::base64_encode("foobar"), "Zm9vYmFy");
}

TEST(StreamProtocol, ErrorStreamStatusAsKubernetesWritesIt) {
    EXPECT_EQ(p::exit_status(4, 0), R"({"metadata":{},"status":"Success"})");
    const auto j = nlohmann::json::parse(p::exit_status(4, 3));
    EXPECT_EQ(j["status"], "Failure");
    EXPECT_EQ(j["reason"], "NonZeroExitCode");
    EXPECT_EQ(j["details"]["causes"][0]["reason"], "ExitCode");
    EXPECT_EQ(j["details"]["causes"][0]["message"], "3");
    EXPECT_EQ(j["message"], "command terminated with non-zero exit code: exit status 3");
    // Before v4: nothing on success, the message otherwise.
    EXPECT_EQ(p::exit_status(2, 0), "");
    EXPECT_EQ(p::exit_status(1, 3), "command terminated with non-zero exit code: exit status 3");
    const auto e = nlohmann::json::parse(p::error_status(5, "no such file"));
    EXPECT_EQ(e["status"], "Failure");
    EXPECT_EQ(e["message"], "no such file");
    EXPECT_EQ(e["code"], 500);
    EXPECT_EQ(p::error_status(3, "no such file"), "no such file");
}

TEST(StreamProtocol, ResizeMessagesSplitOrJoined) {
    p::ResizeDecoder d;
    d.feed(R"({"Width":80,"Hei)");
    EXPECT_FALSE(d.next());
    d.feed(R"(ght":24}{"Width":100,"Height":50})");
    auto s = d.next();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->width, 80u);
    EXPECT_EQ(s->height, 24u);
    s = d.next();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->width, 100u);
    EXPECT_FALSE(d.next());
    d.feed(R"({"Width":-1,"Height":"x"}{"Width":1,"Height":2})");
    s = d.next();
    ASSERT_TRUE(s) << "a bad object is skipped";
    EXPECT_EQ(s->height, 2u);
}

TEST(StreamProtocol, PortsAndPrefixes) {
    EXPECT_EQ(p::port_prefix(8080), std::string("\x90\x1f", 2));
    EXPECT_EQ(p::port_prefix(80), std::string("\x50\x00", 2));
    EXPECT_EQ(p::ports_from_query("/portforward/tok?port=80&port=8080"), (std::vector<std::uint16_t>{80, 8080}));
    EXPECT_EQ(p::ports_from_query("/portforward/tok"), std::vector<std::uint16_t>{});
    EXPECT_FALSE(p::ports_from_query("/x?port=0"));
    EXPECT_FALSE(p::ports_from_query("/x?port=65536"));
    EXPECT_FALSE(p::ports_from_query("/x?port=8o"));
}
