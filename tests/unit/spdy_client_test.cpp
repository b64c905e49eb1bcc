// The node tests' SPDY client (tests/lib/spdy_client) against a small in-process server
// built on the server-role Session: the HTTP upgrade, protocol negotiation, the
// remote-command stream order and exit-code decoding, port forward, and a refused upgrade.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <thread>

#include "common/error.hpp"
#include "spdy_client.hpp"
#include "stream/spdy.hpp"

namespace spdy = crisd::stream::spdy;
using namespace crisd::test;

namespace {

std::string query_value(const std::string& target, const std::string& key) {
    size_t q = target.find('?');
    if (q == std::string::npos) return {};
    std::string qs = target.substr(q + 1);
    size_t at = 0;
    while (at <= qs.size()) {
        size_t amp = qs.find('&', at);
        std::string kv = qs.substr(at, amp == std::string::npos ? std::string::npos : amp - at);
        if (kv.rfind(key + "=", 0) == 0) return kv.substr(key.size() + 1);
        if (amp == std::string::npos) break;
        at = amp + 1;
    }
    return {};
}

// A throwaway P-256 key and a self-signed certificate for 127.0.0.1 (SAN IP), the
// certificate also written to a PEM file for the client to trust.
struct TlsMaterial {
    EVP_PKEY* key = nullptr;
    X509* cert = nullptr;
    std::string cert_file;
    TlsMaterial() {
        key = EVP_EC_gen("P-256");
        cert = X509_new();
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -60);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
        X509_set_pubkey(cert, key);
        X509_NAME* name = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("crisd-test"), -1, -1, 0);
        X509_set_issuer_name(cert, name);
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
        X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "IP:127.0.0.1");
        X509_add_ext(cert, san, -1);
        X509_EXTENSION_free(san);
        X509_sign(cert, key, EVP_sha256());
        char tmpl[] = "/tmp/crisd-spdy-cert-XXXXXX";
        int fd = ::mkstemp(tmpl);
        cert_file = tmpl;
        FILE* f = ::fdopen(fd, "w");
        PEM_write_X509(f, cert);
        std::fclose(f);
    }
    ~TlsMaterial() {
        ::unlink(cert_file.c_str());
        X509_free(cert);
        EVP_PKEY_free(key);
    }
};

// Serves one connection per accept on 127.0.0.1:<ephemeral>, in a thread (over TLS
// when given a TlsMaterial).
//   /exec?expect=N&exit=C      remote command: once N streams are up and stdin (if any)
//                              is closed: stdout = "out:" + stdin, stderr = "err\n",
//                              error stream = v4 Status with exit code C (0: Success).
//   /exec?expect=N&attach=1    writes "ready\n" on stdout once the streams are up, never ends
//   /portforward               echoes "echo:" + request on the data stream.
//   anything else              404.
class TestServer {
public:
    explicit TestServer(const TlsMaterial* tls = nullptr) {
        if (tls) {
            ctx_ = SSL_CTX_new(TLS_server_method());
            SSL_CTX_use_certificate(ctx_, tls->cert);
            SSL_CTX_use_PrivateKey(ctx_, tls->key);
        }
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        ::listen(fd_, 4);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~TestServer() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        ::close(fd_);
        if (ctx_) SSL_CTX_free(ctx_);
    }
    std::string url(const std::string& path) const {
        return std::string(ctx_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
    }

    // What the last connection saw.
    std::vector<std::string> stream_order;
    std::vector<std::string> resizes;
    std::string request_head;

private:
    void run() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            if (ctx_) {
                ssl_ = SSL_new(ctx_);
                SSL_set_fd(ssl_, c);
                if (SSL_accept(ssl_) == 1) serve(c);
                SSL_free(ssl_);
                ssl_ = nullptr;
            } else {
                serve(c);
            }
            ::close(c);
        }
    }

    bool write_all(int fd, const std::string& s) {
        size_t at = 0;
        while (at < s.size()) {
            ssize_t n = ssl_ ? SSL_write(ssl_, s.data() + at, static_cast<int>(s.size() - at))
                             : ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
            if (n <= 0) return false;
            at += static_cast<size_t>(n);
        }
        return true;
    }
    ssize_t read_some(int fd, char* buf, size_t len) {
        return ssl_ ? SSL_read(ssl_, buf, static_cast<int>(len)) : ::read(fd, buf, len);
    }
    bool readable(int fd, int ms) {
        if (ssl_ && SSL_pending(ssl_) > 0) return true;
        pollfd p{fd, POLLIN, 0};
        return ::poll(&p, 1, ms) > 0;
    }

    void serve(int c) {
        std::string in;
        char buf[65536];
        size_t end;
        while ((end = in.find("\r\n\r\n")) == std::string::npos) {
            ssize_t n = read_some(c, buf, sizeof buf);
            if (n <= 0) return;
            in.append(buf, static_cast<size_t>(n));
        }
        request_head = in.substr(0, end);
        std::string rest = in.substr(end + 4);
        std::string target = request_head.substr(request_head.find(' ') + 1);
        target = target.substr(0, target.find(' '));
        bool exec = target.rfind("/exec", 0) == 0;
        bool pf = target.rfind("/portforward", 0) == 0;
        if (target.rfind("/chunked", 0) == 0) {  // a refusal with a chunked body, connection kept open
            write_all(c, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5\r\nfound\r\n0\r\n\r\n");
            pollfd p{c, POLLIN, 0};
            ::poll(&p, 1, 5000);  // until the client closes
            return;
        }
        if (!exec && !pf) {
            write_all(c, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found");
            return;
        }
        // Negotiate: the client's first protocol that we speak.
        std::vector<std::string> ours = exec ? kRemoteCommandProtocols : kPortForwardProtocols;
        std::string chosen;
        size_t at = 0;
        while (chosen.empty() && (at = request_head.find("X-Stream-Protocol-Version: ", at)) != std::string::npos) {
            at += 27;
            std::string v = request_head.substr(at, request_head.find("\r\n", at) - at);
            for (auto& p : ours)
                if (p == v) chosen = v;
        }
        if (chosen.empty()) {
            write_all(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        write_all(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     "X-Stream-Protocol-Version: " + chosen + "\r\n\r\n");

        stream_order.clear();
        resizes.clear();
        int expect = exec ? std::atoi(query_value(target, "expect").c_str()) : 0;
        int exit_code = std::atoi(query_value(target, "exit").c_str());
        std::map<std::string, uint32_t> ids;
        std::map<uint32_t, std::string> types;
        std::string stdin_data, pf_data;
        bool stdin_closed = false, done = false, gone = false;
        std::unique_ptr<spdy::Session> s;

        const bool attach = query_value(target, "attach") == "1";
        auto maybe_run = [&] {
            if (done || !exec || static_cast<int>(ids.size()) < expect) return;
            if (attach) {  // a running container: output, and no end
                done = true;
                s->send_data(ids["stdout"], "ready\n", false);
                return;
            }
            if (ids.count("stdin") && !stdin_closed) return;
            done = true;
            if (ids.count("stdout")) s->send_data(ids["stdout"], "out:" + stdin_data, true);
            if (ids.count("stderr")) s->send_data(ids["stderr"], "err\n", true);
            std::string status = exit_code == 0
                ? R"({"metadata":{},"status":"Success"})"
                : R"({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code",)"
                  R"("reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":")" +
                      std::to_string(exit_code) + R"("}]}})";
            s->send_data(ids["error"], status, true);
        };
        spdy::Callbacks cb;
        cb.on_syn_stream = [&](uint32_t id, const spdy::Headers& h, bool) {
            std::string type;
            for (auto& [n, v] : h)
                if (n == "streamtype") type = v;
            if (pf) {
                std::string port, rid;
                for (auto& [n, v] : h) {
                    if (n == "port") port = v;
                    if (n == "requestid") rid = v;
                }
                type += "/" + port + "/" + rid;
            }
            stream_order.push_back(type);
            ids[type.substr(0, type.find('/'))] = id;
            types[id] = type.substr(0, type.find('/'));
            s->reply(id, {}, false);
            maybe_run();
        };
        cb.on_data = [&](uint32_t id, std::string_view d, bool fin) {
            const std::string& t = types[id];
            if (t == "stdin") {
                stdin_data.append(d);
                if (fin) stdin_closed = true;
                maybe_run();
            } else if (t == "resize") {
                resizes.emplace_back(d);
            } else if (t == "data") {
                pf_data.append(d);
                if (fin) {
                    s->send_data(id, "echo:" + pf_data, true);
                    s->send_data(ids["error"], "", true);
                }
            }
        };
        cb.on_syn_reply = [](uint32_t, const spdy::Headers&, bool) {};
        cb.on_rst_stream = [](uint32_t, uint32_t) {};
        cb.on_goaway = [&](uint32_t, uint32_t) { gone = true; };
        s = std::make_unique<spdy::Session>(spdy::Role::Server, std::move(cb));
        if (!rest.empty()) s->feed(rest);
        while (!gone) {
            if (!write_all(c, s->take_output())) return;
            if (!readable(c, 5000)) return;
            ssize_t n = read_some(c, buf, sizeof buf);
            if (n <= 0) return;
            s->feed(std::string_view(buf, static_cast<size_t>(n)));
        }
        write_all(c, s->take_output());
    }

    int fd_ = -1;
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace

TEST(SpdyClient, ExecWithStdinCollectsOutputAndExitCode) {
    TestServer server;
    RemoteCommandOptions o;
    o.want_stdin = true;
    o.stdin_data = "hello\n";
    auto r = remote_command(server.url("/exec?expect=4&exit=3"), o);
    EXPECT_EQ(r.http_status, 101);
    EXPECT_EQ(r.protocol, "v4.channel.k8s.io");
    EXPECT_EQ(r.stdout_data, "out:hello\n");
    EXPECT_EQ(r.stderr_data, "err\n");
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_TRUE(r.error.empty()) << r.error;
    // client-go's order: the error stream first.
    EXPECT_EQ(server.stream_order, (std::vector<std::string>{"error", "stdin", "stdout", "stderr"}));
    // The upgrade request as client-go sends it.
    EXPECT_NE(server.request_head.find("POST /exec?expect=4&exit=3 HTTP/1.1\r\n"), std::string::npos);
    EXPECT_NE(server.request_head.find("\r\nConnection: Upgrade\r\n"), std::string::npos);
    EXPECT_NE(server.request_head.find("\r\nUpgrade: SPDY/3.1\r\n"), std::string::npos);
    EXPECT_NE(server.request_head.find("X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                                       "X-Stream-Protocol-Version: v3.channel.k8s.io\r\n"
                                       "X-Stream-Protocol-Version: v2.channel.k8s.io\r\n"
                                       "X-Stream-Protocol-Version: channel.k8s.io"),
              std::string::npos);
}

TEST(SpdyClient, ExecSuccessWithoutStdin) {
    TestServer server;
    auto r = remote_command(server.url("/exec?expect=3&exit=0"));
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.stdout_data, "out:");
    EXPECT_EQ(r.status_json, R"({"metadata":{},"status":"Success"})");
    EXPECT_EQ(server.stream_order, (std::vector<std::string>{"error", "stdout", "stderr"}));
}

TEST(SpdyClient, TtyOpensResizeInsteadOfStderrAndSendsSizes) {
    TestServer server;
    RemoteCommandOptions o;
    o.want_stdin = true;
    o.tty = true;
    o.resizes = {{80, 24}, {120, 40}};
    o.stdin_data = "x";
    auto r = remote_command(server.url("/exec?expect=4&exit=0"), o);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(server.stream_order, (std::vector<std::string>{"error", "stdin", "stdout", "resize"}));
    std::string all;
    for (auto& s : server.resizes) all += s;
    EXPECT_EQ(all, "{\"Width\":80,\"Height\":24}\n{\"Width\":120,\"Height\":40}\n");
}

TEST(SpdyClient, OlderProtocolNegotiated) {
    TestServer server;
    RemoteCommandOptions o;
    o.protocols = {"v9.channel.k8s.io", "v2.channel.k8s.io"};
    auto r = remote_command(server.url("/exec?expect=3&exit=0"), o);
    EXPECT_EQ(r.protocol, "v2.channel.k8s.io");
    EXPECT_EQ(r.stdout_data, "out:");
}

TEST(SpdyClient, RefusedUpgradeReturnsTheHttpStatus) {
    TestServer server;
    auto r = remote_command(server.url("/badtoken/exec"));
    EXPECT_EQ(r.http_status, 404);
    EXPECT_EQ(r.http_body, "not found");
    auto chunked = remote_command(server.url("/chunked"));
    EXPECT_EQ(chunked.http_status, 404);
    EXPECT_EQ(chunked.http_body, "not found");
    auto p = port_forward(server.url("/nothing"), 80, "x");
    EXPECT_EQ(p.http_status, 404);
    RemoteCommandOptions o;
    o.protocols = {"v9.channel.k8s.io"};
    EXPECT_EQ(remote_command(server.url("/exec?expect=3"), o).http_status, 403);
}

TEST(SpdyClient, PortForwardEchoes) {
    TestServer server;
    auto r = port_forward(server.url("/portforward"), 8080, "GET / HTTP/1.0\r\n\r\n");
    EXPECT_EQ(r.http_status, 101);
    EXPECT_EQ(r.protocol, "portforward.k8s.io");
    EXPECT_EQ(r.data, "echo:GET / HTTP/1.0\r\n\r\n");
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(server.stream_order, (std::vector<std::string>{"error/8080/0", "data/8080/0"}));
}

TEST(SpdyClient, LargeTransfersFlowBothWays) {
    TestServer server;
    RemoteCommandOptions o;
    o.want_stdin = true;
    o.stdin_data = std::string(3 * 1024 * 1024, 's');  // far beyond the 64 KiB windows
    auto r = remote_command(server.url("/exec?expect=4&exit=0"), o);
    EXPECT_EQ(r.stdout_data.size(), 4 + o.stdin_data.size());
    EXPECT_EQ(r.exit_code, 0);
}

TEST(SpdyClient, NoServerIsAClearError) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);  // nothing listens on this port now
    try {
        remote_command("http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/exec");
        FAIL() << "no error";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("connecting to"), std::string::npos) << e.what();
    }
    EXPECT_THROW(remote_command("ftp://127.0.0.1:1/exec"), std::exception);
}

TEST(SpdyClient, OverTls) {
    TlsMaterial tls;
    TestServer server(&tls);
    RemoteCommandOptions o;
    o.want_stdin = true;
    o.stdin_data = std::string(300 * 1024, 't');  // several TLS records each way
    o.tls_ca_file = tls.cert_file;
    auto r = remote_command(server.url("/exec?expect=4&exit=5"), o);
    EXPECT_EQ(r.http_status, 101);
    EXPECT_EQ(r.stdout_data, "out:" + o.stdin_data);
    EXPECT_EQ(r.exit_code, 5);
    PortForwardOptions po;
    po.tls_ca_file = tls.cert_file;
    EXPECT_EQ(port_forward(server.url("/portforward"), 80, "x", po).data, "echo:x");
    EXPECT_EQ(remote_command(server.url("/nothing"), o).http_status, 404);
    // Without a CA file the certificate is not checked; with another one it fails.
    RemoteCommandOptions unchecked;
    EXPECT_EQ(remote_command(server.url("/exec?expect=3&exit=0"), unchecked).exit_code, 0);
    TlsMaterial other;
    RemoteCommandOptions wrong;
    wrong.tls_ca_file = other.cert_file;
    try {
        remote_command(server.url("/exec?expect=3&exit=0"), wrong);
        FAIL() << "no error";
    } catch (const crisd::Error& e) {
        EXPECT_NE(std::string(e.what()).find("TLS handshake"), std::string::npos) << e.what();
    }
}

TEST(SpdyClientStatus, DecodesV4Status) {
    std::string err;
    EXPECT_EQ(decode_v4_status(R"({"metadata":{},"status":"Success"})", &err), 0);
    EXPECT_EQ(decode_v4_status(R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}})", &err), 42);
    EXPECT_EQ(decode_v4_status(R"({"status":"Failure","reason":"InternalError","message":"boom"})", &err), -1);
    EXPECT_EQ(err, "boom");
    EXPECT_EQ(decode_v4_status(R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}})", &err), -1);
    EXPECT_NE(err.find("invalid exit code"), std::string::npos);
    EXPECT_EQ(decode_v4_status("not json", &err), -1);
}

TEST(SpdyClient, AttachReturnsOnExpectedOutput) {
    TestServer server;
    RemoteCommandOptions o;
    o.want_stdin = true;
    o.close_stdin = false;
    o.until_stdout_contains = "ready";
    o.timeout = std::chrono::seconds(5);
    auto r = remote_command(server.url("/exec?expect=4&attach=1"), o);
    EXPECT_EQ(r.stdout_data, "ready\n");
    EXPECT_EQ(r.exit_code, -1);
    // Without the marker the client waits for the end and times out with a clear error.
    o.until_stdout_contains.clear();
    o.timeout = std::chrono::milliseconds(500);
    try {
        remote_command(server.url("/exec?expect=4&attach=1"), o);
        FAIL() << "no timeout";
    } catch (const crisd::Error& e) {
        EXPECT_EQ(e.code(), crisd::Code::DeadlineExceeded);
        EXPECT_NE(std::string(e.what()).find("timed out after 500 ms"), std::string::npos) << e.what();
    }
}
