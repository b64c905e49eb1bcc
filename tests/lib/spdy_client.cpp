#include "spdy_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "stream/spdy.hpp"

namespace crisd::test {

namespace spdy = crisd::stream::spdy;
using Clock = std::chrono::steady_clock;

namespace {

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

struct Url {
    bool tls = false;
    std::string host;
    std::string port;
    std::string target;  // path and query
};

Url parse_url(const std::string& url) {
    Url u;
    std::string rest;
    if (url.rfind("http://", 0) == 0) {
        rest = url.substr(7);
    } else if (url.rfind("https://", 0) == 0) {
        rest = url.substr(8);
        u.tls = true;
    } else {
        throw Error(Code::InvalidArgument, "spdy client: not an http:// or https:// URL: " + url);
    }
    const std::string default_port = u.tls ? "443" : "80";
    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    u.target = slash == std::string::npos ? "/" : rest.substr(slash);
    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string::npos) throw Error(Code::InvalidArgument, "spdy client: bad host in " + url);
        u.host = authority.substr(1, close - 1);
        u.port = authority.size() > close + 2 ? authority.substr(close + 2) : default_port;
    } else {
        size_t colon = authority.rfind(':');
        u.host = authority.substr(0, colon);
        u.port = colon == std::string::npos ? default_port : authority.substr(colon + 1);
    }
    return u;
}

// One upgraded connection: a socket, a client Session and the streams' state.
class Connection {
public:
    struct StreamState {
        bool replied = false;
        bool fin = false;    // the server half-closed (or reset) it
        bool reset = false;
        std::string data;
    };

    Connection(const std::string& url, const std::vector<std::string>& protocols, const std::string& method,
               std::chrono::milliseconds timeout, const std::string& tls_ca_file)
        : deadline_(Clock::now() + timeout), timeout_(timeout), url_(url) {
        Url u = parse_url(url);
        connect(u);
        if (u.tls) start_tls(u, tls_ca_file);
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
        std::string req = method + " " + u.target + " HTTP/1.1\r\n";
        req += "Host: " + (u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host) + ":" + u.port + "\r\n";
        req += "User-Agent: crisd-test-spdy-client\r\n";
        req += "Content-Length: 0\r\n";
        req += "Connection: Upgrade\r\n";
        req += "Upgrade: SPDY/3.1\r\n";
        for (const auto& p : protocols) req += "X-Stream-Protocol-Version: " + p + "\r\n";
        req += "\r\n";
        outbuf_ = req;
        read_response();
    }

    ~Connection() {
        if (ssl_) {
            SSL_shutdown(ssl_);  // best effort close_notify
            SSL_free(ssl_);
        }
        if (ctx_) SSL_CTX_free(ctx_);
        if (fd_ >= 0) ::close(fd_);
    }

    int status() const { return status_; }
    const std::string& body() const { return body_; }
    const std::string& protocol() const { return protocol_; }
    bool upgraded() const { return session_ != nullptr; }
    StreamState& stream(uint32_t id) { return streams_[id]; }
    spdy::Session& session() { return *session_; }

    // SYN_STREAM, then wait for the SYN_REPLY (client-go waits before the next one).
    uint32_t create_stream(const spdy::Headers& headers) {
        uint32_t id = session_->open_stream(headers, false);
        streams_[id];
        run_until([&] { return streams_[id].replied || streams_[id].fin; }, "the reply to stream " + headers.front().second);
        if (streams_[id].reset) throw Error(Code::Aborted, "spdy client: server reset the " + headers.front().second + " stream");
        return id;
    }

    // Runs the socket until done() or the deadline (throws) or the server closes.
    void run_until(const std::function<bool()>& done, const std::string& what) {
        while (!done()) {
            if (eof_) {
                for (auto& [id, s] : streams_) s.fin = true;
                if (done()) return;
                throw Error(Code::Unavailable, "spdy client: server closed the connection while waiting for " + what);
            }
            step(what);
        }
        flush_blocking();
    }

    // As client-go's Connection.Close: reset the streams still open, then GOAWAY.
    void finish() {
        if (session_ && !eof_) {
            for (const auto& [id, s] : streams_)
                if (session_->stream_open(id)) session_->reset(id, spdy::rst::Cancel);
            session_->goaway(spdy::goaway::Ok);
            try {
                flush_blocking();
            } catch (const Error&) {
            }
        }
    }

private:
    void connect(const Url& u) {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        int rc = ::getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res);
        if (rc != 0) throw Error(Code::InvalidArgument, "spdy client: resolving " + u.host + ": " + gai_strerror(rc));
        std::string last = "no address";
        for (addrinfo* a = res; a; a = a->ai_next) {
            int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) continue;
            if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                fd_ = fd;
                break;
            }
            last = std::strerror(errno);
            ::close(fd);
        }
        ::freeaddrinfo(res);
        if (fd_ < 0) throw Error(Code::Unavailable, "spdy client: connecting to " + url_ + ": " + last);
    }

    static std::string ssl_errors() {
        std::string out;
        while (unsigned long e = ERR_get_error()) {
            char buf[256];
            ERR_error_string_n(e, buf, sizeof buf);
            if (!out.empty()) out += "; ";
            out += buf;
        }
        return out.empty() ? "unknown TLS error" : out;
    }

    // TLS on the connected (still blocking) socket: the handshake within the deadline;
    // the server's certificate checked against `ca_file` and the URL's host when given.
    void start_tls(const Url& u, const std::string& ca_file) {
        ctx_ = SSL_CTX_new(TLS_client_method());
        if (!ctx_) throw Error(Code::Internal, "spdy client: SSL_CTX_new: " + ssl_errors());
        if (!ca_file.empty()) {
            if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1)
                throw Error(Code::InvalidArgument, "spdy client: loading " + ca_file + ": " + ssl_errors());
            SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
        }
        ssl_ = SSL_new(ctx_);
        SSL_set_fd(ssl_, fd_);
        SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        in6_addr a6;
        in_addr a4;
        bool ip = ::inet_pton(AF_INET, u.host.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, u.host.c_str(), &a6) == 1;
        if (!ca_file.empty()) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
            if (ip) X509_VERIFY_PARAM_set1_ip_asc(param, u.host.c_str());
            else X509_VERIFY_PARAM_set1_host(param, u.host.c_str(), 0);
        }
        if (!ip) SSL_set_tlsext_host_name(ssl_, u.host.c_str());
        timeval tv{};
        int ms = remaining_ms("the TLS handshake");
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (SSL_connect(ssl_) != 1) {
            long verify = SSL_get_verify_result(ssl_);
            std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : ssl_errors();
            throw Error(Code::Unavailable, "spdy client: TLS handshake with " + url_ + ": " + why);
        }
        tv = {};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }

    // >0 bytes, 0 end of stream, -1 nothing now, -2 an error (treated as the end).
    ssize_t io_read(char* buf, size_t len) {
        if (!ssl_) {
            ssize_t n = ::read(fd_, buf, len);
            if (n >= 0) return n;
            return errno == EAGAIN || errno == EINTR ? -1 : -2;
        }
        int n = SSL_read(ssl_, buf, static_cast<int>(len));
        if (n > 0) return n;
        switch (SSL_get_error(ssl_, n)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE: return -1;
        case SSL_ERROR_ZERO_RETURN: return 0;
        default: return -2;
        }
    }

    ssize_t io_write(const char* buf, size_t len) {
        if (!ssl_) {
            ssize_t n = ::send(fd_, buf, len, MSG_NOSIGNAL);
            if (n >= 0) return n;
            return errno == EAGAIN || errno == EINTR ? -1 : -2;
        }
        int n = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(len, 1 << 20)));
        if (n > 0) return n;
        switch (SSL_get_error(ssl_, n)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE: return -1;
        default: return -2;
        }
    }

    int remaining_ms(const std::string& what) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
        if (left <= 0)
            throw Error(Code::DeadlineExceeded, "spdy client: timed out after " + std::to_string(timeout_.count()) +
                                                    " ms waiting for " + what + " (" + url_ + ")");
        return static_cast<int>(left);
    }

    // One poll round: write what is pending, read what came.
    void step(const std::string& what) {
        if (session_) outbuf_ += session_->take_output();
        pollfd p{fd_, POLLIN, 0};
        if (!outbuf_.empty()) p.events |= POLLOUT;
        // TLS may hold decrypted bytes that poll() cannot see.
        const bool buffered = ssl_ && SSL_pending(ssl_) > 0;
        int rc = ::poll(&p, 1, buffered ? 0 : std::min(remaining_ms(what), 200));
        if (rc < 0) {
            if (errno == EINTR) return;
            throw_errno("spdy client: poll");
        }
        if (p.revents & POLLOUT) write_some();
        if (buffered || (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[65536];
            ssize_t n = io_read(buf, sizeof buf);
            if (n > 0) {
                on_bytes(std::string_view(buf, static_cast<size_t>(n)));
            } else if (n == 0 || n == -2) {
                eof_ = true;
            }
        }
    }

    void write_some() {
        while (!outbuf_.empty()) {
            ssize_t n = io_write(outbuf_.data(), outbuf_.size());
            if (n > 0) {
                outbuf_.erase(0, static_cast<size_t>(n));
            } else if (n == -1) {
                return;
            } else {
                eof_ = true;
                outbuf_.clear();
                return;
            }
        }
    }

    void flush_blocking() {
        if (session_) outbuf_ += session_->take_output();
        while (!outbuf_.empty() && !eof_) {
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, std::min(remaining_ms("writing"), 200));
            write_some();
        }
    }

    void on_bytes(std::string_view bytes) {
        if (session_) {
            session_->feed(bytes);
            return;
        }
        head_.append(bytes);
    }

    void read_response() {
        size_t end;
        while ((end = head_.find("\r\n\r\n")) == std::string::npos) {
            if (eof_) throw Error(Code::Unavailable, "spdy client: connection closed before an HTTP response from " + url_);
            if (head_.size() > 64 * 1024) throw Error(Code::InvalidArgument, "spdy client: HTTP response head too long");
            step("the HTTP response");
        }
        std::string head = head_.substr(0, end);
        std::string rest = head_.substr(end + 4);
        head_.clear();
        // Status line: HTTP/1.1 101 Switching Protocols
        size_t line_end = head.find("\r\n");
        std::string status_line = head.substr(0, line_end);
        size_t sp = status_line.find(' ');
        if (sp == std::string::npos || status_line.rfind("HTTP/", 0) != 0)
            throw Error(Code::InvalidArgument, "spdy client: bad HTTP status line: " + status_line);
        status_ = std::atoi(status_line.c_str() + sp + 1);
        std::multimap<std::string, std::string> headers;
        size_t at = line_end == std::string::npos ? head.size() : line_end + 2;
        while (at < head.size()) {
            size_t e = head.find("\r\n", at);
            if (e == std::string::npos) e = head.size();
            std::string line = head.substr(at, e - at);
            at = e + 2;
            size_t colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            value.erase(value.find_last_not_of(" \t") + 1);
            headers.emplace(lower(line.substr(0, colon)), value);
        }
        auto get = [&](const std::string& n) {
            auto it = headers.find(n);
            return it == headers.end() ? std::string() : it->second;
        };
        if (status_ != 101) {
            // The refusal's body: by Content-Length, chunked, or until the server closes.
            std::string raw = rest;
            auto more = [&] {
                step("the HTTP response body");
                raw += head_;
                head_.clear();
            };
            if (lower(get("transfer-encoding")).find("chunked") != std::string::npos) {
                size_t at = 0;
                for (;;) {
                    size_t eol;
                    while ((eol = raw.find("\r\n", at)) == std::string::npos && !eof_) more();
                    if (eol == std::string::npos) break;
                    size_t len = std::strtoul(raw.c_str() + at, nullptr, 16);
                    if (len == 0) break;
                    while (raw.size() < eol + 2 + len + 2 && !eof_) more();
                    if (raw.size() < eol + 2 + len) break;
                    body_ += raw.substr(eol + 2, len);
                    at = eol + 2 + len + 2;
                }
                return;
            }
            std::string cl = get("content-length");
            size_t want = cl.empty() ? std::string::npos : std::stoul(cl);
            while (raw.size() < want && !eof_) more();
            body_ = want != std::string::npos && raw.size() > want ? raw.substr(0, want) : raw;
            return;
        }
        if (lower(get("connection")).find("upgrade") == std::string::npos ||
            lower(get("upgrade")).find("spdy/3.1") == std::string::npos)
            throw Error(Code::InvalidArgument, "spdy client: 101 without Connection: Upgrade / Upgrade: SPDY/3.1");
        protocol_ = get("x-stream-protocol-version");

        spdy::Callbacks cb;
        cb.on_syn_stream = [this](uint32_t id, const spdy::Headers&, bool) {
            session_->reset(id, spdy::rst::RefusedStream);  // servers open no streams here
        };
        cb.on_syn_reply = [this](uint32_t id, const spdy::Headers&, bool fin) {
            streams_[id].replied = true;
            if (fin) streams_[id].fin = true;
        };
        cb.on_data = [this](uint32_t id, std::string_view data, bool fin) {
            auto& s = streams_[id];
            s.data.append(data);
            if (fin) s.fin = true;
        };
        cb.on_rst_stream = [this](uint32_t id, uint32_t) {
            auto& s = streams_[id];
            s.fin = true;
            s.reset = true;
        };
        cb.on_goaway = [](uint32_t, uint32_t) {};
        session_ = std::make_unique<spdy::Session>(spdy::Role::Client, std::move(cb));
        if (!rest.empty()) session_->feed(rest);
    }

    int fd_ = -1;
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
    Clock::time_point deadline_;
    std::chrono::milliseconds timeout_;
    std::string url_;
    std::string outbuf_;
    std::string head_;
    bool eof_ = false;
    int status_ = 0;
    std::string body_;
    std::string protocol_;
    std::unique_ptr<spdy::Session> session_;
    std::map<uint32_t, StreamState> streams_;
};

}  // namespace

int decode_v4_status(const std::string& json, std::string* error) {
    nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        if (error) *error = "error stream protocol error: not JSON: " + json;
        return -1;
    }
    std::string status = j.value("status", "");
    if (status == "Success") return 0;
    if (status == "Failure" && j.value("reason", "") == "NonZeroExitCode") {
        if (j.contains("details") && j["details"].contains("causes")) {
            for (const auto& c : j["details"]["causes"]) {
                if (c.value("reason", "") != "ExitCode") continue;
                std::string m = c.value("message", "");
                char* end = nullptr;
                long code = std::strtol(m.c_str(), &end, 10);
                if (m.empty() || *end != '\0' || code < 0 || code > 255) {
                    if (error) *error = "error stream protocol error: invalid exit code value \"" + m + "\"";
                    return -1;
                }
                return static_cast<int>(code);
            }
        }
        if (error) *error = "error stream protocol error: no ExitCode cause given";
        return -1;
    }
    if (error) *error = j.value("message", status.empty() ? json : "status " + status);
    return -1;
}

RemoteCommandResult remote_command(const std::string& url, const RemoteCommandOptions& o) {
    RemoteCommandResult r;
    Connection conn(url, o.protocols, o.method, o.timeout, o.tls_ca_file);
    r.http_status = conn.status();
    r.http_body = conn.body();
    r.protocol = conn.protocol();
    if (!conn.upgraded()) return r;

    const bool v4 = r.protocol == "v4.channel.k8s.io";
    const bool resize = r.protocol == "v4.channel.k8s.io" || r.protocol == "v3.channel.k8s.io";
    uint32_t err = conn.create_stream({{"streamtype", "error"}});
    uint32_t in = 0, out = 0, errout = 0, rs = 0;
    if (o.want_stdin) in = conn.create_stream({{"streamtype", "stdin"}});
    if (o.want_stdout) out = conn.create_stream({{"streamtype", "stdout"}});
    if (o.want_stderr && !o.tty) errout = conn.create_stream({{"streamtype", "stderr"}});
    if (o.tty && resize) rs = conn.create_stream({{"streamtype", "resize"}});

    auto& session = conn.session();
    if (rs) {
        for (auto [w, h] : o.resizes)
            session.send_data(rs, "{\"Width\":" + std::to_string(w) + ",\"Height\":" + std::to_string(h) + "}\n", false);
    }
    if (in) {
        if (!o.stdin_data.empty()) session.send_data(in, o.stdin_data, false);
        if (o.close_stdin) session.close_stream(in);
    }

    if (!o.until_stdout_contains.empty()) {
        conn.run_until([&] { return !out || conn.stream(out).data.find(o.until_stdout_contains) != std::string::npos ||
                                    conn.stream(out).fin; },
                       "\"" + o.until_stdout_contains + "\" on stdout");
        r.stdout_data = out ? conn.stream(out).data : "";
        r.stderr_data = errout ? conn.stream(errout).data : "";
        conn.finish();
        return r;
    }
    // As client-go: stdout and stderr to their end, then the error stream to its end.
    conn.run_until([&] { return (!out || conn.stream(out).fin) && (!errout || conn.stream(errout).fin); },
                   "the end of stdout/stderr");
    conn.run_until([&] { return conn.stream(err).fin; }, "the end of the error stream");
    r.stdout_data = out ? conn.stream(out).data : "";
    r.stderr_data = errout ? conn.stream(errout).data : "";
    r.status_json = conn.stream(err).data;
    if (r.status_json.empty()) {
        r.exit_code = 0;
    } else if (v4) {
        r.exit_code = decode_v4_status(r.status_json, &r.error);
    } else {
        r.error = "error executing remote command: " + r.status_json;
    }
    conn.finish();
    return r;
}

PortForwardResult port_forward(const std::string& url, uint16_t port, const std::string& request,
                               const PortForwardOptions& o) {
    PortForwardResult r;
    Connection conn(url, o.protocols, o.method, o.timeout, o.tls_ca_file);
    r.http_status = conn.status();
    r.http_body = conn.body();
    r.protocol = conn.protocol();
    if (!conn.upgraded()) return r;

    const std::string p = std::to_string(port);
    uint32_t err = conn.create_stream({{"streamtype", "error"}, {"port", p}, {"requestid", o.request_id}});
    conn.session().close_stream(err);  // "we're not writing to this stream"
    uint32_t data = conn.create_stream({{"streamtype", "data"}, {"port", p}, {"requestid", o.request_id}});
    if (!request.empty()) conn.session().send_data(data, request, false);
    if (o.half_close) conn.session().close_stream(data);
    conn.run_until([&] { return conn.stream(data).fin; }, "the end of the data stream");
    // The error stream ends when the server is done with the request.
    conn.run_until([&] { return conn.stream(err).fin; }, "the end of the error stream");
    r.data = conn.stream(data).data;
    r.error = conn.stream(err).data;
    conn.finish();
    return r;
}

std::vector<PortForwardResult> port_forward_many(const std::string& url, uint16_t port,
                                                const std::vector<std::string>& requests,
                                                const PortForwardOptions& o) {
    Connection conn(url, o.protocols, o.method, o.timeout, o.tls_ca_file);
    std::vector<PortForwardResult> out(requests.size());
    for (auto& r : out) {
        r.http_status = conn.status();
        r.http_body = conn.body();
        r.protocol = conn.protocol();
    }
    if (!conn.upgraded()) return out;
    const std::string p = std::to_string(port);
    std::vector<std::pair<uint32_t, uint32_t>> ids;  // error, data
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const std::string rid = std::to_string(i);
        uint32_t err = conn.create_stream({{"streamtype", "error"}, {"port", p}, {"requestid", rid}});
        conn.session().close_stream(err);
        uint32_t data = conn.create_stream({{"streamtype", "data"}, {"port", p}, {"requestid", rid}});
        ids.emplace_back(err, data);
    }
    // Every connection is open before any request goes out.
    for (std::size_t i = 0; i < requests.size(); ++i) {
        if (!requests[i].empty()) conn.session().send_data(ids[i].second, requests[i], false);
        if (o.half_close) conn.session().close_stream(ids[i].second);
    }
    conn.run_until(
        [&] {
            for (auto [err, data] : ids)
                if (!conn.stream(data).fin || !conn.stream(err).fin) return false;
            return true;
        },
        "the end of every data and error stream");
    for (std::size_t i = 0; i < ids.size(); ++i) {
        out[i].data = conn.stream(ids[i].second).data;
        out[i].error = conn.stream(ids[i].first).data;
    }
    conn.finish();
    return out;
}

}  // namespace crisd::test
