// Interop with moby/spdystream, the SPDY library of kubectl, the API server and the
// kubelet: tests/interop/spdy_peer.go plays the kubelet's streaming server (against the
// node tests' client) and client-go's exec client (against RemoteCommandServer).
// CRISD_SPDY_PEER names the built peer (meson builds it when Go and Debian's
// golang-github-docker-spdystream-dev are installed; scripts/setup installs both).
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "spdy_client.hpp"
#include "stream/portforward_spdy.hpp"
#include "stream/remotecommand_spdy.hpp"

using namespace crisd::test;
namespace spdy = crisd::stream::spdy;

namespace {

std::string peer_path() {
    const char* p = std::getenv("CRISD_SPDY_PEER");
    return p ? p : "";
}

// `spdy-peer server`, which prints its port first; killed (by its pid) at the end.
class GoServer {
public:
    GoServer() {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe");
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::close(out[0]);
            ::close(out[1]);
            std::string path = peer_path();
            ::execl(path.c_str(), path.c_str(), "server", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(out[1]);
        char buf[32] = {};
        size_t got = 0;
        while (got < sizeof buf - 1) {
            pollfd p{out[0], POLLIN, 0};
            if (::poll(&p, 1, 10000) <= 0) break;
            ssize_t n = ::read(out[0], buf + got, 1);
            if (n <= 0 || buf[got] == '\n') break;
            ++got;
        }
        ::close(out[0]);
        port_ = std::atoi(buf);
    }
    ~GoServer() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    int port() const { return port_; }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

private:
    pid_t pid_ = -1;
    int port_ = 0;
};

bool write_all(int fd, const std::string& s) {
    size_t at = 0;
    while (at < s.size()) {
        ssize_t n = ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
        if (n <= 0) return false;
        at += static_cast<size_t>(n);
    }
    return true;
}

// A one-connection exec server on RemoteCommandServer: stdout = "out:" + stdin,
// stderr = "err\n", the error stream = `status`.
void serve_exec(int listener, const std::string& status) {
    int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    std::string in;
    char buf[65536];
    size_t end;
    while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) {
            ::close(c);
            return;
        }
        in.append(buf, static_cast<size_t>(n));
    }
    std::string head = in.substr(0, end);
    std::string rest = in.substr(end + 4);
    std::string proto = head.find("X-Stream-Protocol-Version: v4.channel.k8s.io") != std::string::npos
                            ? "v4.channel.k8s.io" : "channel.k8s.io";
    write_all(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                 "X-Stream-Protocol-Version: " + proto + "\r\n\r\n");
    std::string stdin_data;
    spdy::RemoteCommandServer* srv = nullptr;
    spdy::RemoteCommandServer::Callbacks cb;
    cb.on_stdin = [&](std::string_view d) { stdin_data.append(d); };
    cb.on_stdin_closed = [&] {
        srv->write_stdout("out:" + stdin_data);
        srv->write_stderr("err\n");
        srv->finish(status);
    };
    spdy::RemoteCommandServer server(proto, {true, true, true, false}, cb);
    srv = &server;
    if (!rest.empty()) server.feed(rest);
    // Until the client is done with us (it says GOAWAY and closes).
    for (;;) {
        if (!write_all(c, server.take_output())) break;
        pollfd p{c, POLLIN, 0};
        if (::poll(&p, 1, 10000) <= 0) break;
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        server.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    ::close(c);
}

// A one-connection port-forward server on PortForwardServer: answers "echo:<port>:" + request.
void serve_forward(int listener) {
    int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    std::string in;
    char buf[65536];
    size_t end;
    while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) {
            ::close(c);
            return;
        }
        in.append(buf, static_cast<size_t>(n));
    }
    std::string rest = in.substr(end + 4);
    write_all(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                 "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n");
    std::map<uint32_t, std::string> req;
    std::map<uint32_t, uint16_t> ports;
    spdy::PortForwardServer* srv = nullptr;
    spdy::PortForwardServer::Callbacks cb;
    cb.on_connect = [&](uint32_t r, uint16_t port) { ports[r] = port; };
    cb.on_data = [&](uint32_t r, std::string_view d) { req[r].append(d); };
    cb.on_data_closed = [&](uint32_t r) {
        srv->send(r, "echo:" + std::to_string(ports[r]) + ":" + req[r]);
        srv->close(r);
    };
    spdy::PortForwardServer server(cb);
    srv = &server;
    if (!rest.empty()) server.feed(rest);
    for (;;) {
        if (!write_all(c, server.take_output())) break;
        pollfd p{c, POLLIN, 0};
        if (::poll(&p, 1, 10000) <= 0) break;
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        server.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    ::close(c);
}

int listen_loopback(uint16_t* port) {
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1) != 0) return -1;
    socklen_t len = sizeof a;
    ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
    *port = ntohs(a.sin_port);
    return l;
}

std::string run(const std::string& cmd) {
    std::string out;
    if (FILE* f = ::popen(cmd.c_str(), "r")) {
        char buf[4096];
        size_t got;
        while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, got);
        ::pclose(f);
    }
    return out;
}

}  // namespace

TEST(SpdyInterop, SpdystreamPortForwarderAgainstPortForwardServer) {
    ASSERT_FALSE(peer_path().empty()) << "CRISD_SPDY_PEER is not set";
    uint16_t port = 0;
    int l = listen_loopback(&port);
    ASSERT_GE(l, 0);
    std::thread t([&] { serve_forward(l); });
    std::string out = run(peer_path() + " forward http://127.0.0.1:" + std::to_string(port) +
                          "/portforward 8080 'GET / HTTP/1.0'");
    t.join();
    ::close(l);
    auto j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    EXPECT_EQ(j["protocol"], "portforward.k8s.io");
    EXPECT_EQ(j["data"], "echo:8080:GET / HTTP/1.0");
    EXPECT_EQ(j["error"], "");
}

TEST(SpdyInterop, ClientAgainstSpdystreamServer) {
    ASSERT_FALSE(peer_path().empty()) << "CRISD_SPDY_PEER is not set";
    GoServer go;
    ASSERT_GT(go.port(), 0);

    // 1 MiB each way: spdystream sends no WINDOW_UPDATE, so a client that waited for
    // one would stall after 64 KiB.
    RemoteCommandOptions o;
    o.want_stdin = true;
    o.stdin_data = std::string(1 << 20, 'i');
    auto r = remote_command(go.url("/exec?out=1048576"), o);
    EXPECT_EQ(r.http_status, 101);
    EXPECT_EQ(r.protocol, "v4.channel.k8s.io");
    EXPECT_EQ(r.stdout_data, "out:" + o.stdin_data + std::string(1 << 20, 'o'));
    EXPECT_EQ(r.stderr_data, "err\n");
    EXPECT_EQ(r.exit_code, 7) << r.status_json;

    auto p = port_forward(go.url("/portforward"), 8080, "GET / HTTP/1.0\r\n\r\n");
    EXPECT_EQ(p.http_status, 101);
    EXPECT_EQ(p.protocol, "portforward.k8s.io");
    EXPECT_EQ(p.data, "echo:8080:GET / HTTP/1.0\r\n\r\n");
    EXPECT_EQ(p.error, "");

    RemoteCommandOptions bad;
    bad.protocols = {"v9.channel.k8s.io"};
    EXPECT_EQ(remote_command(go.url("/exec"), bad).http_status, 403);
}

TEST(SpdyInterop, SpdystreamClientAgainstRemoteCommandServer) {
    ASSERT_FALSE(peer_path().empty()) << "CRISD_SPDY_PEER is not set";
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(l, 1), 0);
    socklen_t len = sizeof a;
    ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
    const std::string status =
        R"({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3",)"
        R"("reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}})";
    std::thread t([&] { serve_exec(l, status); });

    const size_t n = 1 << 20;
    std::string cmd = peer_path() + " exec http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/exec " +
                      std::to_string(n);
    std::string out;
    if (FILE* f = ::popen(cmd.c_str(), "r")) {
        char buf[4096];
        size_t got;
        while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, got);
        ::pclose(f);
    }
    t.join();
    ::close(l);
    auto j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    EXPECT_EQ(j["http_status"], 101);
    EXPECT_EQ(j["protocol"], "v4.channel.k8s.io");
    EXPECT_EQ(j["stdout_len"], 4 + n);
    EXPECT_EQ(j["stdout_prefix"], "out:iiiiiiiiiiii");
    EXPECT_EQ(j["stderr"], "err\n");
    EXPECT_EQ(j["status"], status);
}
