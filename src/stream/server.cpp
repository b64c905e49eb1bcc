// The streaming server: Boost.Beast HTTP(S) on Asio, one I/O thread. Routes
// /exec|attach|portforward/<token> to a WebSocket or SPDY session over the
// backends in backend.hpp.
#include "stream/stream.hpp"

#include <fcntl.h>
#include <netinet/tcp.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <charconv>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <variant>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "runtime/containers.hpp"
#include "runtime/pods.hpp"
#include "stream/backend.hpp"
#include "stream/portforward_spdy.hpp"
#include "stream/protocol.hpp"
#include "stream/remotecommand_spdy.hpp"
#include "stream/tokens.hpp"

namespace crisd::stream {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Request = http::request<http::empty_body>;

struct PortForwardJob {
    std::string pod_id;
    std::string netns;  // "" on the host network
    std::vector<std::uint16_t> ports;
};

using Job = std::variant<ExecJob, AttachJob, PortForwardJob>;

constexpr std::size_t kCongested = 1024 * 1024;  // queued output before backends pause
constexpr std::size_t kDrained = 256 * 1024;

// Something the server can close at shutdown.
class Session {
public:
    virtual ~Session() = default;
    virtual void shutdown() = 0;
};

class Registry {
public:
    void add(const std::shared_ptr<Session>& s) {
        std::lock_guard lock(mu_);
        std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
        sessions_.push_back(s);
    }
    std::vector<std::shared_ptr<Session>> all() {
        std::lock_guard lock(mu_);
        std::vector<std::shared_ptr<Session>> out;
        for (auto& w : sessions_)
            if (auto s = w.lock()) out.push_back(s);
        return out;
    }

private:
    std::mutex mu_;
    std::vector<std::weak_ptr<Session>> sessions_;
};

std::string header_value(const Request& req, http::field f) {
    auto it = req.find(f);
    return it == req.end() ? std::string() : std::string(it->value());
}

bool contains_nocase(std::string_view hay, std::string_view needle) {
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
           }) != hay.end();
}

// Closes a session that has seen no traffic either way for `idle` (0: never).
// Its state lives in a shared_ptr that the pending wait holds, so the timer
// may outlive the session that owned it.
class IdleTimer {
public:
    template <class Executor>
    IdleTimer(Executor ex, std::chrono::seconds idle) : st_(std::make_shared<State>(ex, idle)) {}
    ~IdleTimer() { stop(); }
    // Traffic: pushes the deadline out (the timer is re-armed lazily).
    void touch(std::function<void()> on_idle) {
        auto& st = *st_;
        if (st.idle.count() <= 0 || st.stopped) return;
        st.last = std::chrono::steady_clock::now();
        if (!st.on_idle) st.on_idle = std::move(on_idle);
        if (!st.armed) arm(st_);
    }
    void stop() {
        st_->stopped = true;
        st_->on_idle = nullptr;
        st_->timer.cancel();
    }

private:
    struct State {
        template <class Executor>
        State(Executor ex, std::chrono::seconds i) : timer(ex), idle(i) {}
        asio::steady_timer timer;
        std::chrono::seconds idle;
        std::chrono::steady_clock::time_point last;
        std::function<void()> on_idle;
        bool armed = false;
        bool stopped = false;
    };
    static void arm(const std::shared_ptr<State>& st) {
        st->armed = true;
        st->timer.expires_at(st->last + st->idle);
        st->timer.async_wait([st](error_code ec) {
            st->armed = false;
            if (ec || st->stopped) return;
            if (std::chrono::steady_clock::now() - st->last >= st->idle) {
                if (auto f = std::exchange(st->on_idle, nullptr)) f();
                return;
            }
            arm(st);
        });
    }
    std::shared_ptr<State> st_;
};

// While a session does not read its client (its backend has too much of
// the client's input queued), no read is pending: this holds the session,
// and checks once a second whether the client has closed its side of the
// TCP connection (CLOSE_WAIT; its FIN waits behind the unread bytes), so that
// a client gone meanwhile still ends its command.
class ReadPause {
public:
    template <class Executor>
    explicit ReadPause(Executor ex) : timer_(ex) {}
    bool active() const { return static_cast<bool>(owner_); }
    void begin(std::shared_ptr<void> owner, int fd, std::function<void()> on_client_gone) {
        owner_ = std::move(owner);
        fd_ = fd;
        on_gone_ = std::move(on_client_gone);
        arm();
    }
    // Hands the owner back: the caller keeps it until it is done.
    std::shared_ptr<void> end() {
        timer_.cancel();
        on_gone_ = nullptr;
        return std::move(owner_);
    }

private:
    void arm() {
        timer_.expires_after(std::chrono::seconds(1));
        timer_.async_wait([this, weak = std::weak_ptr<void>(owner_)](error_code ec) {
            auto owner = weak.lock();  // alive: so is this member of it
            if (ec || !owner || !owner_) return;
            tcp_info ti{};
            socklen_t len = sizeof ti;
            if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_ESTABLISHED) {
                arm();
                return;
            }
            if (auto f = std::exchange(on_gone_, nullptr)) f();
        });
    }
    asio::steady_timer timer_;
    std::shared_ptr<void> owner_;
    int fd_ = -1;
    std::function<void()> on_gone_;
};

// A WebSocket carrying channel messages (channel.k8s.io framing): the write
// queue, flow control and the close handshake, shared by remote command and
// port forward.
template <class Stream>
class WsChannels : public std::enable_shared_from_this<WsChannels<Stream>> {
public:
    WsChannels(Stream&& stream, protocol::WsProtocol proto, std::chrono::seconds idle)
        : ws_(std::move(stream)), proto_(std::move(proto)), idle_(ws_.get_executor(), idle),
          pause_(ws_.get_executor()) {}
    virtual ~WsChannels() = default;

    void accept(Request req) {
        beast::get_lowest_layer(ws_).expires_never();
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        ws_.set_option(websocket::stream_base::decorator([name = proto_.name](websocket::response_type& res) {
            if (!name.empty()) res.set(http::field::sec_websocket_protocol, name);
            res.set(http::field::server, "crisd");
        }));
        ws_.binary(!proto_.base64);
        ws_.read_message_max(16 * 1024 * 1024);
        ws_.async_accept(req, [self = this->shared_from_this()](error_code ec) {
            if (ec) {
                spdlog::debug("stream: WebSocket handshake: {}", ec.message());
                return;
            }
            self->touch();
            self->opened();
            self->read();
        });
    }

    void send(std::uint8_t channel, std::string_view data) {
        if (closing_ || closed_) return;
        q_.push_back(protocol::ws_encode(proto_, channel, data));
        queued_ += q_.back().size();
        kick();
    }
    // Closes (normal closure) once everything queued is written.
    void close() {
        if (closing_ || closed_) return;
        closing_ = true;
        kick();
    }
    bool congested() const { return queued_ > kCongested; }
    void on_drained(std::function<void()> fn) {
        if (queued_ <= kDrained) {
            asio::post(ws_.get_executor(), std::move(fn));
            return;
        }
        drained_.push_back(std::move(fn));
    }
    void abort() {
        auto keep = pause_.end();  // released when this returns
        closed_ = true;
        idle_.stop();
        error_code ec;
        beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
        beast::get_lowest_layer(ws_).close();
    }
    // The backend wrote some of the client's input: read again once it holds
    // little enough.
    void input_drained() {
        if (read_paused_ && !closed_ && input_queued() <= kInputLow) {
            read_paused_ = false;
            auto keep = pause_.end();
            read();
        }
    }

protected:
    virtual void opened() = 0;
    virtual void message(std::uint8_t channel, std::string data) = 0;
    virtual void gone() = 0;  // the client closed or the connection broke
    // Input from the client that the backend has not written yet.
    virtual std::size_t input_queued() const = 0;
    const protocol::WsProtocol& proto() const { return proto_; }

private:
    void touch() {
        idle_.touch([weak = std::weak_ptr<WsChannels>(this->shared_from_this())] {
            if (auto s = weak.lock(); s && !s->closed_) {
                spdlog::info("stream: closing a WebSocket session idle for the stream_idle_timeout");
                s->abort();
                s->gone();
            }
        });
    }
    void read() {
        ws_.async_read(rbuf_, [self = this->shared_from_this()](error_code ec, std::size_t) {
            if (ec) {
                const bool was = self->closed_;
                self->closed_ = true;
                self->idle_.stop();
                if (!was || !self->closing_) self->gone();
                return;
            }
            self->touch();
            const std::string msg = beast::buffers_to_string(self->rbuf_.data());
            self->rbuf_.consume(self->rbuf_.size());
            if (auto m = protocol::ws_decode(self->proto_, msg)) self->message(m->channel, std::move(m->data));
            if (self->closed_) return;
            // The backend cannot write as fast as the client sends: stop
            // reading (TCP pushes back) until it has caught up.
            if (self->input_queued() > kInputHigh) {
                self->read_paused_ = true;
                self->pause_.begin(self, beast::get_lowest_layer(self->ws_).socket().native_handle(),
                                   [weak = std::weak_ptr<WsChannels>(self)] {
                                       if (auto s = weak.lock(); s && !s->closed_) {
                                           spdlog::info("stream: WebSocket client gone while its input was held up");
                                           s->abort();
                                           s->gone();
                                       }
                                   });
                return;
            }
            self->read();
        });
    }
    void kick() {
        if (busy_ || closed_) return;
        if (q_.empty()) {
            if (closing_) {
                busy_ = true;
                ws_.async_close(websocket::close_code::normal, [self = this->shared_from_this()](error_code) {
                    self->busy_ = false;
                    self->pause_.end();  // closed: nothing more to read
                });
            }
            return;
        }
        busy_ = true;
        ws_.async_write(asio::buffer(q_.front()), [self = this->shared_from_this()](error_code ec, std::size_t) {
            self->busy_ = false;
            self->touch();
            self->queued_ -= self->q_.front().size();
            self->q_.pop_front();
            if (ec) {
                self->q_.clear();
                self->queued_ = 0;
                self->closed_ = true;
                self->pause_.end();
                self->gone();
                return;
            }
            if (self->queued_ <= kDrained && !self->drained_.empty()) {
                auto fns = std::exchange(self->drained_, {});
                for (auto& f : fns) f();
            }
            self->kick();
        });
    }

    websocket::stream<Stream> ws_;
    protocol::WsProtocol proto_;
    IdleTimer idle_;
    beast::flat_buffer rbuf_;
    std::deque<std::string> q_;
    std::size_t queued_ = 0;
    std::vector<std::function<void()>> drained_;
    bool busy_ = false;
    bool read_paused_ = false;
    ReadPause pause_;
    bool closing_ = false;
    bool closed_ = false;
};

// exec / attach over a WebSocket (kubelet's remotecommand/websocket.go).
template <class Stream>
class WsCommand final : public WsChannels<Stream>, public Sink, public Session {
public:
    WsCommand(Stream&& s, protocol::WsProtocol p, std::chrono::seconds idle, std::shared_ptr<RemoteCommand> cmd,
              bool out, bool err)
        : WsChannels<Stream>(std::move(s), std::move(p), idle), cmd_(std::move(cmd)), out_(out), err_(err) {}

    void output(std::uint8_t channel, std::string data) override { this->send(channel, data); }
    bool congested() const override { return WsChannels<Stream>::congested(); }
    void on_drained(std::function<void()> fn) override { WsChannels<Stream>::on_drained(std::move(fn)); }
    void finish(const Outcome& o) override {
        const int v = this->proto().version;
        const std::string status = o.error.empty() ? protocol::exit_status(v, o.exit_code.value_or(0))
                                                   : protocol::error_status(v, o.error);
        if (!o.error.empty()) spdlog::info("stream: {}", o.error);
        if (!status.empty()) this->send(protocol::kError, status);
        this->close();
    }
    void input_drained() override { WsChannels<Stream>::input_drained(); }
    void shutdown() override {
        cmd_->cancel();
        this->abort();
    }

private:
    std::size_t input_queued() const override { return cmd_->input_queued(); }
    void opened() override {
        // An empty message on the lowest writable channel tells the client
        // that the connection is set up (as the kubelet does).
        this->send(out_ ? protocol::kStdout : err_ ? protocol::kStderr : protocol::kError, "");
        cmd_->start(std::static_pointer_cast<WsCommand>(this->shared_from_this()));
    }
    void message(std::uint8_t channel, std::string data) override {
        switch (channel) {
        case protocol::kStdin: cmd_->input(std::move(data)); break;
        case protocol::kResize:
            resize_.feed(data);
            while (auto sz = resize_.next()) cmd_->resize(*sz);
            break;
        case protocol::kStreamClose:
            if (data.size() == 1 && static_cast<std::uint8_t>(data[0]) == protocol::kStdin) cmd_->close_input();
            break;
        default: break;
        }
    }
    void gone() override { cmd_->cancel(); }

    std::shared_ptr<RemoteCommand> cmd_;
    bool out_, err_;
    protocol::ResizeDecoder resize_;
};

// port forward over a WebSocket (kubelet's portforward/websocket.go): port i
// uses channel 2i for data and 2i+1 for errors; both start with the port.
template <class Stream>
class WsPortForward final : public WsChannels<Stream>, public Session {
public:
    WsPortForward(Stream&& s, protocol::WsProtocol p, std::chrono::seconds idle, asio::io_context& io,
                  PortForwardJob job)
        : WsChannels<Stream>(std::move(s), std::move(p), idle), io_(io), job_(std::move(job)) {}

    void shutdown() override {
        for (auto& c : conns_) c->cancel();
        this->abort();
    }

private:
    void opened() override {
        auto self = std::static_pointer_cast<WsPortForward>(this->shared_from_this());
        open_ = job_.ports.size();
        for (std::size_t i = 0; i < job_.ports.size(); ++i) {
            const auto port = job_.ports[i];
            const auto data_ch = static_cast<std::uint8_t>(2 * i), err_ch = static_cast<std::uint8_t>(2 * i + 1);
            this->send(data_ch, protocol::port_prefix(port));
            this->send(err_ch, protocol::port_prefix(port));
            auto conn = make_port_conn(io_, job_.netns, port, job_.pod_id);
            conns_.push_back(conn);
            std::weak_ptr<WsPortForward> weak = self;
            conn->start({
                [weak, data_ch](std::string d) {
                    if (auto s = weak.lock()) s->send(data_ch, d);
                },
                [weak, err_ch](std::string e) {
                    if (auto s = weak.lock()) s->send(err_ch, e);
                },
                [weak] {
                    if (auto s = weak.lock()) {
                        if (--s->open_ == 0) s->close();
                        s->input_drained();  // its input is dropped: read again if that was the brake
                    }
                },
                [weak] {
                    auto s = weak.lock();
                    return s && s->congested();
                },
                [weak](std::function<void()> fn) {
                    if (auto s = weak.lock()) s->on_drained(std::move(fn));
                },
                [weak] {
                    if (auto s = weak.lock()) s->input_drained();
                },
            });
        }
        if (job_.ports.empty()) this->close();
    }
    std::size_t input_queued() const override {
        std::size_t n = 0;
        for (const auto& c : conns_) n += c->input_queued();
        return n;
    }
    void message(std::uint8_t channel, std::string data) override {
        const std::size_t i = channel / 2;
        if (channel % 2 != 0 || i >= conns_.size() || data.empty()) return;
        conns_[i]->input(std::move(data));
    }
    void gone() override {
        for (auto& c : conns_) c->cancel();
    }

    asio::io_context& io_;
    PortForwardJob job_;
    std::vector<std::shared_ptr<PortConn>> conns_;
    std::size_t open_ = 0;
};

// ---- SPDY/3.1 (the kubelet's and API server's protocol to runtimes) ----
//
// The upgraded connection's bytes go through a sans-IO server (spdy/*.hpp):
// read → feed(), take_output() → write; this class owns the socket, the
// write loop, backpressure and the linger at the end.
template <class Stream>
class SpdyConn : public std::enable_shared_from_this<SpdyConn<Stream>> {
public:
    SpdyConn(Stream&& stream, std::string protocol, std::chrono::seconds idle)
        : stream_(std::move(stream)), protocol_(std::move(protocol)), timer_(stream_.get_executor()),
          idle_(stream_.get_executor(), idle), pause_(stream_.get_executor()) {}
    virtual ~SpdyConn() = default;

    // Answers 101, feeds what was read past the request head, starts reading.
    void upgrade(std::string leftover) {
        beast::get_lowest_layer(stream_).expires_never();
        std::string head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n";
        if (!protocol_.empty()) head += "X-Stream-Protocol-Version: " + protocol_ + "\r\n";
        head += "\r\n";
        push(std::move(head));
        touch();
        started();
        if (!leftover.empty()) feed_bytes(leftover);
        flush();
        read();
    }

    // Queues the session's output and writes it.
    void flush() {
        if (closed_) return;
        if (wants_write()) push(take_output());
        if (busy_) return;
        if (q_.empty()) {
            check_drained();
            if (finished() && !shut_) {
                shut_ = true;
                error_code ec;
                beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ec);
                // The client answers with RST_STREAMs and GOAWAY, then closes;
                // do not wait for it for long.
                timer_.expires_after(std::chrono::seconds(2));
                timer_.async_wait([self = this->shared_from_this()](error_code e) {
                    if (!e) self->abort();
                });
            }
            return;
        }
        busy_ = true;
        asio::async_write(stream_, asio::buffer(q_.front()),
                          [self = this->shared_from_this()](error_code ec, std::size_t) {
                              self->busy_ = false;
                              self->touch();
                              self->q_bytes_ -= self->q_.front().size();
                              self->q_.pop_front();
                              if (ec) {
                                  self->q_.clear();
                                  self->q_bytes_ = 0;
                                  self->abort();
                                  return;
                              }
                              self->flush();
                              self->maybe_resume();
                          });
    }

    // Reads again if reading was paused and both brakes are off: our output
    // to the client is written (a peer that does not read stops being read)
    // and the backends have written the client's input.
    void maybe_resume() {
        if (read_paused_ && !closed_ && q_bytes_ <= kDrained && input_queued() <= kInputLow) {
            read_paused_ = false;
            auto keep = pause_.end();
            read();
        }
    }

    void on_drained_cb(std::function<void()> fn) {
        drained_.push_back(std::move(fn));
        check_drained();
    }

    void abort() {
        if (closed_) return;
        auto keep = pause_.end();  // released when this returns
        closed_ = true;
        timer_.cancel();
        idle_.stop();
        error_code ec;
        beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
        beast::get_lowest_layer(stream_).close();
        gone();
    }

protected:
    virtual void started() = 0;
    virtual void feed(std::string_view bytes) = 0;
    virtual std::string take_output() = 0;
    virtual bool wants_write() const = 0;
    virtual std::size_t pending() const = 0;
    virtual bool finished() const = 0;
    virtual void gone() = 0;  // the connection is closed
    virtual std::size_t input_queued() const = 0;  // the client's input not yet written by the backends

    auto executor() { return stream_.get_executor(); }
    // Bytes taken from the session but not yet written to the socket.
    std::size_t unwritten() const { return q_bytes_; }

private:
    void touch() {
        idle_.touch([weak = std::weak_ptr<SpdyConn>(this->shared_from_this())] {
            if (auto s = weak.lock()) {
                spdlog::info("stream: closing a SPDY session idle for the stream_idle_timeout");
                s->abort();
            }
        });
    }
    void feed_bytes(std::string_view bytes) {
        try {
            feed(bytes);
        } catch (const Error& e) {
            spdlog::info("stream: SPDY: {}", e.what());
            if (wants_write()) push(take_output());
            // Write what the session queued (GOAWAY), then close.
            proto_error_ = true;
        }
    }
    void read() {
        stream_.async_read_some(asio::buffer(rbuf_), [self = this->shared_from_this()](error_code ec, std::size_t n) {
            if (self->closed_) return;
            if (ec || n == 0) {
                self->abort();
                return;
            }
            self->touch();
            self->feed_bytes(std::string_view(self->rbuf_.data(), n));
            self->flush();
            if (self->proto_error_) {
                self->timer_.expires_after(std::chrono::milliseconds(500));
                self->timer_.async_wait([self](error_code e) {
                    if (!e) self->abort();
                });
                return;
            }
            if (self->q_bytes_ > 4 * kCongested || self->input_queued() > kInputHigh) {
                self->read_paused_ = true;
                self->pause_.begin(self, beast::get_lowest_layer(self->stream_).socket().native_handle(),
                                   [weak = std::weak_ptr<SpdyConn>(self)] {
                                       if (auto s = weak.lock()) {
                                           spdlog::info("stream: SPDY client gone while reading it was paused");
                                           s->abort();
                                       }
                                   });
                return;
            }
            self->read();
        });
    }
    void push(std::string bytes) {
        q_bytes_ += bytes.size();
        q_.push_back(std::move(bytes));
    }
    void check_drained() {
        if (drained_.empty() || pending() + q_bytes_ > kDrained) return;
        auto fns = std::exchange(drained_, {});
        for (auto& f : fns) asio::post(stream_.get_executor(), std::move(f));
    }

    Stream stream_;
    std::string protocol_;
    asio::steady_timer timer_;
    IdleTimer idle_;
    std::array<char, 32 * 1024> rbuf_{};
    std::deque<std::string> q_;
    std::size_t q_bytes_ = 0;
    std::vector<std::function<void()>> drained_;
    bool busy_ = false;
    bool read_paused_ = false;
    ReadPause pause_;
    bool shut_ = false;
    bool closed_ = false;
    bool proto_error_ = false;
};

// exec / attach over SPDY (kubelet's remotecommand/httpstream.go).
template <class Stream>
class SpdyCommand final : public SpdyConn<Stream>, public Sink, public Session {
public:
    SpdyCommand(Stream&& s, std::string protocol, std::chrono::seconds idle, spdy::RemoteCommandServer::Expect expect,
                std::shared_ptr<RemoteCommand> cmd)
        : SpdyConn<Stream>(std::move(s), protocol, idle), protocol_(protocol), expect_(expect), cmd_(std::move(cmd)),
          ready_timer_(this->executor()) {}

    void output(std::uint8_t channel, std::string data) override {
        if (!server_) return;
        if (channel == protocol::kStderr) server_->write_stderr(data);
        else server_->write_stdout(data);
        this->flush();
    }
    bool congested() const override { return server_ && server_->pending_bytes() + this->unwritten() > kCongested; }
    void on_drained(std::function<void()> fn) override { this->on_drained_cb(std::move(fn)); }
    void finish(const Outcome& o) override {
        if (!server_) return;
        const int v = server_->version();
        if (!o.error.empty()) spdlog::info("stream: {}", o.error);
        server_->finish(o.error.empty() ? protocol::exit_status(v, o.exit_code.value_or(0))
                                        : protocol::error_status(v, o.error));
        this->flush();
    }
    void input_drained() override { this->maybe_resume(); }
    void shutdown() override {
        cmd_->cancel();
        this->abort();
    }

private:
    std::size_t input_queued() const override { return cmd_->input_queued(); }
    void started() override {
        auto weak = std::weak_ptr<SpdyCommand>(std::static_pointer_cast<SpdyCommand>(this->shared_from_this()));
        spdy::RemoteCommandServer::Callbacks cb;
        cb.on_ready = [weak] {
            if (auto s = weak.lock()) {
                s->ready_timer_.cancel();
                s->cmd_->start(std::static_pointer_cast<Sink>(s));
            }
        };
        cb.on_stdin = [weak](std::string_view d) {
            if (auto s = weak.lock()) s->cmd_->input(std::string(d));
        };
        cb.on_stdin_closed = [weak] {
            if (auto s = weak.lock()) s->cmd_->close_input();
        };
        cb.on_resize = [weak](std::string_view d) {
            if (auto s = weak.lock()) {
                s->resize_.feed(d);
                while (auto sz = s->resize_.next()) s->cmd_->resize(*sz);
            }
        };
        cb.on_client_gone = [weak] {
            if (auto s = weak.lock()) {
                s->cmd_->cancel();
                s->gone_ = true;
            }
        };
        server_ = std::make_unique<spdy::RemoteCommandServer>(protocol_, expect_, std::move(cb));
        // The kubelet waits 30 s for the client's streams.
        ready_timer_.expires_after(std::chrono::seconds(30));
        ready_timer_.async_wait([weak](error_code ec) {
            if (auto s = weak.lock(); s && !ec && !s->server_->ready()) {
                spdlog::info("stream: SPDY client did not open its streams within 30 s");
                s->abort();
            }
        });
    }
    void feed(std::string_view bytes) override {
        server_->feed(bytes);
        if (gone_) this->abort();
    }
    std::string take_output() override { return server_->take_output(); }
    bool wants_write() const override { return server_ && server_->wants_write(); }
    std::size_t pending() const override { return server_ ? server_->pending_bytes() : 0; }
    bool finished() const override { return server_ && server_->done(); }
    void gone() override {
        ready_timer_.cancel();
        cmd_->cancel();
    }

    std::string protocol_;
    spdy::RemoteCommandServer::Expect expect_;
    std::shared_ptr<RemoteCommand> cmd_;
    std::unique_ptr<spdy::RemoteCommandServer> server_;
    asio::steady_timer ready_timer_;
    protocol::ResizeDecoder resize_;
    bool gone_ = false;
};

// port forward over SPDY (portforward.k8s.io; kubelet's portforward/httpstream.go).
template <class Stream>
class SpdyPortForward final : public SpdyConn<Stream>, public Session {
public:
    SpdyPortForward(Stream&& s, std::string protocol, std::chrono::seconds idle, asio::io_context& io,
                    PortForwardJob job)
        : SpdyConn<Stream>(std::move(s), std::move(protocol), idle), io_(io), job_(std::move(job)),
          expire_timer_(this->executor()) {}

    void shutdown() override {
        for (auto& [_, c] : conns_) c->cancel();
        conns_.clear();
        this->abort();
    }

private:
    void started() override {
        auto weak = std::weak_ptr<SpdyPortForward>(std::static_pointer_cast<SpdyPortForward>(this->shared_from_this()));
        spdy::PortForwardServer::Callbacks cb;
        cb.on_connect = [weak](std::uint32_t req, std::uint16_t port) {
            if (auto s = weak.lock()) s->connect(req, port);
        };
        cb.on_data = [weak](std::uint32_t req, std::string_view d) {
            if (auto s = weak.lock())
                if (auto it = s->conns_.find(req); it != s->conns_.end()) it->second->input(std::string(d));
        };
        cb.on_data_closed = [weak](std::uint32_t req) {
            if (auto s = weak.lock())
                if (auto it = s->conns_.find(req); it != s->conns_.end()) it->second->close_input();
        };
        cb.on_cancel = [weak](std::uint32_t req) {
            if (auto s = weak.lock())
                if (auto it = s->conns_.find(req); it != s->conns_.end()) {
                    it->second->cancel();
                    s->conns_.erase(it);
                    s->maybe_resume();
                }
        };
        server_ = std::make_unique<spdy::PortForwardServer>(std::move(cb));
        tick();
    }
    void tick() {
        expire_timer_.expires_after(std::chrono::seconds(1));
        expire_timer_.async_wait([weak = std::weak_ptr<SpdyPortForward>(
                                      std::static_pointer_cast<SpdyPortForward>(this->shared_from_this()))](error_code ec) {
            auto s = weak.lock();
            if (!s || ec) return;
            if (s->server_->expire(std::chrono::seconds(30)) > 0) s->flush();
            s->tick();
        });
    }
    void connect(std::uint32_t req, std::uint16_t port) {
        auto conn = make_port_conn(io_, job_.netns, port, job_.pod_id);
        conns_[req] = conn;
        auto weak = std::weak_ptr<SpdyPortForward>(std::static_pointer_cast<SpdyPortForward>(this->shared_from_this()));
        conn->start({
            [weak, req](std::string d) {
                if (auto s = weak.lock()) {
                    s->server_->send(req, d);
                    s->flush();
                }
            },
            [weak, req](std::string e) {
                if (auto s = weak.lock()) {
                    s->server_->fail(req, e);
                    s->failed_.insert(req);
                    s->flush();
                }
            },
            [weak, req] {
                if (auto s = weak.lock()) {
                    if (!s->failed_.erase(req)) s->server_->close(req);
                    s->conns_.erase(req);
                    s->flush();
                    s->maybe_resume();
                }
            },
            [weak, req] {
                auto s = weak.lock();
                return s && s->server_->pending_bytes(req) + s->unwritten() > kCongested;
            },
            [weak](std::function<void()> fn) {
                if (auto s = weak.lock()) s->on_drained_cb(std::move(fn));
            },
            [weak] {
                if (auto s = weak.lock()) s->maybe_resume();
            },
        });
    }
    std::size_t input_queued() const override {
        std::size_t n = 0;
        for (const auto& [_, c] : conns_) n += c->input_queued();
        return n;
    }
    void feed(std::string_view bytes) override {
        server_->feed(bytes);
        if (server_->client_gone()) {
            for (auto& [_, c] : conns_) c->cancel();
            conns_.clear();
        }
    }
    std::string take_output() override { return server_->take_output(); }
    bool wants_write() const override { return server_ && server_->wants_write(); }
    std::size_t pending() const override { return server_ ? server_->pending_bytes() : 0; }
    bool finished() const override { return false; }  // the client ends it
    void gone() override {
        expire_timer_.cancel();
        for (auto& [_, c] : conns_) c->cancel();
        conns_.clear();
    }

    asio::io_context& io_;
    PortForwardJob job_;
    std::unique_ptr<spdy::PortForwardServer> server_;
    std::map<std::uint32_t, std::shared_ptr<PortConn>> conns_;
    std::set<std::uint32_t> failed_;
    asio::steady_timer expire_timer_;
};

}  // namespace

struct StreamServer::Impl {
    Impl(Options o, runtime::ContainerManager& c, runtime::PodManager& p)
        : opts(std::move(o)), containers(c), pods(p), tokens(opts.token_ttl) {}

    Options opts;
    runtime::ContainerManager& containers;
    runtime::PodManager& pods;
    TokenCache<Job> tokens;
    asio::io_context io{1};
    // Keeps io.run() going while stop() still posts to it (the sessions and
    // the acceptor may all be gone by then).
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::unique_ptr<ssl::context> tls;
    std::unique_ptr<tcp::acceptor> acceptor;
    std::thread thread;
    Registry sessions;
    std::vector<std::weak_ptr<RemoteCommand>> commands;  // I/O thread only (and after it stopped)
    // Blocking requests to crisd-conmon (attach resizes, one in flight per
    // session) run here, never on the I/O thread; several threads, so that
    // one stuck conmon does not hold up every session's; joined after the
    // I/O thread at stop().
    std::unique_ptr<asio::thread_pool> blocking = std::make_unique<asio::thread_pool>(4);
    mutable std::mutex mu;  // guards address
    std::string address;

    Offload offload() {
        return [pool = blocking.get()](std::function<void()> fn) { asio::post(*pool, std::move(fn)); };
    }
    void track(const std::shared_ptr<RemoteCommand>& cmd) {
        std::erase_if(commands, [](const auto& w) { return w.expired(); });
        commands.push_back(cmd);
    }
    std::size_t running_commands() {
        std::size_t n = 0;
        for (auto& w : commands)
            if (auto c = w.lock(); c && c->running()) ++n;
        return n;
    }

    std::string url(const char* kind, Job job) {
        std::string addr;
        {
            std::lock_guard lock(mu);
            addr = address;
        }
        if (addr.empty()) throw Error(Code::Unavailable, "the streaming server is not running");
        return std::string(tls ? "https://" : "http://") + addr + "/" + kind + "/" + tokens.insert(std::move(job));
    }

    void accept() {
        acceptor->async_accept([this](error_code ec, tcp::socket sock) {
            if (ec) {
                if (ec != asio::error::operation_aborted) {
                    spdlog::warn("stream: accept: {}", ec.message());
                    accept();
                }
                return;
            }
            // Asio accepts without SOCK_CLOEXEC. Another thread's spawn in
            // the window before this is harmless: every spawn in crisd
            // closes the descriptors above 2.
            ::fcntl(sock.native_handle(), F_SETFD, FD_CLOEXEC);
            beast::tcp_stream stream(std::move(sock));
            if (tls) {
                auto s = std::make_shared<beast::ssl_stream<beast::tcp_stream>>(std::move(stream), *tls);
                beast::get_lowest_layer(*s).expires_after(std::chrono::seconds(30));
                s->async_handshake(ssl::stream_base::server, [this, s](error_code hec) {
                    if (hec) {
                        spdlog::debug("stream: TLS handshake: {}", hec.message());
                        return;
                    }
                    read_request(std::move(*s));
                });
            } else {
                read_request(std::move(stream));
            }
            accept();
        });
    }

    template <class Stream>
    void read_request(Stream&& stream) {
        struct Conn {
            explicit Conn(Stream&& s) : stream(std::move(s)) {}
            Stream stream;
            beast::flat_buffer buf;
            http::request_parser<http::empty_body> parser;
        };
        auto c = std::make_shared<Conn>(std::forward<Stream>(stream));
        c->parser.header_limit(16 * 1024);
        beast::get_lowest_layer(c->stream).expires_after(std::chrono::seconds(30));
        http::async_read(c->stream, c->buf, c->parser, [this, c](error_code ec, std::size_t) {
            if (ec) {
                spdlog::debug("stream: reading a request: {}", ec.message());
                return;
            }
            route(std::move(c->stream), c->parser.release(), beast::buffers_to_string(c->buf.data()));
        });
    }

    template <class Stream>
    void respond(Stream&& stream, http::status status, std::string body,
                 const std::vector<std::pair<std::string, std::string>>& headers = {}) {
        auto s = std::make_shared<Stream>(std::forward<Stream>(stream));
        auto res = std::make_shared<http::response<http::string_body>>(status, 11);
        res->set(http::field::server, "crisd");
        for (const auto& [name, value] : headers) res->insert(name, value);
        res->set(http::field::content_type, "text/plain; charset=utf-8");
        res->keep_alive(false);
        res->body() = std::move(body) + "\n";
        res->prepare_payload();
        http::async_write(*s, *res, [s, res](error_code, std::size_t) {
            error_code ec;
            beast::get_lowest_layer(*s).socket().shutdown(tcp::socket::shutdown_both, ec);
        });
    }

    template <class Stream>
    void route(Stream&& stream, Request req, std::string leftover) {
        const std::string_view target(req.target().data(), req.target().size());
        const auto path = target.substr(0, target.find('?'));
        std::string_view kind, token;
        if (path.size() > 1) {
            const auto slash = path.find('/', 1);
            if (slash != std::string_view::npos) {
                kind = path.substr(1, slash - 1);
                token = path.substr(slash + 1);
            }
        }
        if (req.method() != http::verb::get && req.method() != http::verb::post)
            return respond(std::move(stream), http::status::method_not_allowed, "method not allowed");
        std::optional<Job> job;
        if ((kind == "exec" || kind == "attach" || kind == "portforward") && !token.empty() &&
            token.find('/') == std::string_view::npos)
            job = tokens.consume(std::string(token));
        const bool kind_ok = job && ((kind == "exec" && std::holds_alternative<ExecJob>(*job)) ||
                                     (kind == "attach" && std::holds_alternative<AttachJob>(*job)) ||
                                     (kind == "portforward" && std::holds_alternative<PortForwardJob>(*job)));
        if (!kind_ok) {
            spdlog::debug("stream: {} /{}/...: unknown, expired or used token", std::string(req.method_string()),
                          std::string(kind));
            return respond(std::move(stream), http::status::not_found, "token not found (unknown, expired or used)");
        }
        if (websocket::is_upgrade(req)) return websocket_session(std::move(stream), std::move(req), std::move(*job));
        const auto upgrade = header_value(req, http::field::upgrade);
        if (contains_nocase(upgrade, "SPDY/3.1"))
            return spdy_session(std::move(stream), std::move(req), std::move(*job), std::move(leftover));
        respond(std::move(stream), http::status::bad_request,
                "expected a WebSocket or SPDY/3.1 upgrade request");
    }

    template <class Stream>
    void spdy_session(Stream&& stream, Request req, Job job, std::string leftover) {
        std::vector<std::string> offered;
        for (const auto& f : req)
            if (beast::iequals(f.name_string(), "X-Stream-Protocol-Version")) offered.emplace_back(f.value());
        // No common protocol: 403 with the server's list in
        // X-Accepted-Stream-Protocol-Versions, as apimachinery's Handshake does.
        auto refuse = [&](const std::vector<std::string>& supported) {
            std::string client, server;
            for (const auto& o : offered) client += (client.empty() ? "" : " ") + o;
            std::vector<std::pair<std::string, std::string>> headers;
            for (const auto& p : supported) {
                server += (server.empty() ? "" : " ") + p;
                headers.emplace_back("X-Accepted-Stream-Protocol-Versions", p);
            }
            respond(std::move(stream), http::status::forbidden,
                    "unable to upgrade: unable to negotiate protocol: client supports [" + client +
                        "], server accepts [" + server + "]",
                    headers);
        };
        if (auto* pf = std::get_if<PortForwardJob>(&job)) {
            const std::string proto = protocol::negotiate_spdy_portforward(offered);
            if (!offered.empty() && proto.empty()) return refuse({protocol::kSpdyPortForwardProtocol});
            spdlog::info("stream: port-forward to pod {} over SPDY", pf->pod_id.substr(0, 12));
            auto s = std::make_shared<SpdyPortForward<Stream>>(std::forward<Stream>(stream), proto, opts.idle_timeout, io,
                                                               std::move(*pf));
            sessions.add(s);
            s->upgrade(std::move(leftover));
            return;
        }
        const auto proto = protocol::negotiate_spdy_remotecommand(offered);
        if (!offered.empty() && proto.empty())
            return refuse({std::begin(protocol::kSpdyRemoteCommandProtocols),
                           std::end(protocol::kSpdyRemoteCommandProtocols)});
        std::shared_ptr<RemoteCommand> cmd;
        spdy::RemoteCommandServer::Expect expect;
        if (auto* e = std::get_if<ExecJob>(&job)) {
            expect = {e->stdin, e->stdout, e->stderr, e->tty};
            spdlog::info("stream: exec in container {} ({}{}) over SPDY {}", e->container_id.substr(0, 12),
                         e->cmd.empty() ? "" : e->cmd[0], e->tty ? ", tty" : "", proto);
            cmd = make_exec(io, std::move(*e));
        } else {
            auto& a = std::get<AttachJob>(job);
            expect = {a.stdin, a.stdout, a.stderr, a.tty};
            spdlog::info("stream: attach to container {} over SPDY {}", a.container_id.substr(0, 12), proto);
            cmd = make_attach(io, std::move(a), offload());
        }
        track(cmd);
        auto s = std::make_shared<SpdyCommand<Stream>>(std::forward<Stream>(stream), proto, opts.idle_timeout, expect, cmd);
        sessions.add(s);
        s->upgrade(std::move(leftover));
    }

    template <class Stream>
    void websocket_session(Stream&& stream, Request req, Job job) {
        const auto offered = header_value(req, http::field::sec_websocket_protocol);
        if (auto* pf = std::get_if<PortForwardJob>(&job)) {
            const auto proto = protocol::negotiate_ws_portforward(offered);
            if (!proto)
                return respond(std::move(stream), http::status::bad_request,
                               "unsupported WebSocket protocol(s) " + offered +
                                   "; supported: v4.channel.k8s.io, v4.base64.channel.k8s.io");
            const auto ports = protocol::ports_from_query(std::string_view(req.target().data(), req.target().size()));
            if (!ports) return respond(std::move(stream), http::status::bad_request, "invalid port in the query");
            if (!ports->empty()) pf->ports = *ports;
            if (pf->ports.empty())
                return respond(std::move(stream), http::status::bad_request, "no port to forward (query ?port=N)");
            auto s = std::make_shared<WsPortForward<Stream>>(std::forward<Stream>(stream), *proto, opts.idle_timeout,
                                                             io, std::move(*pf));
            sessions.add(s);
            s->accept(std::move(req));
            return;
        }
        const auto proto = protocol::negotiate_ws_remotecommand(offered);
        if (!proto)
            return respond(std::move(stream), http::status::bad_request,
                           "unsupported WebSocket protocol(s) " + offered +
                               "; supported: v5.channel.k8s.io, v4.channel.k8s.io, v4.base64.channel.k8s.io, "
                               "channel.k8s.io, base64.channel.k8s.io");
        std::shared_ptr<RemoteCommand> cmd;
        bool out = false, err = false;
        if (auto* e = std::get_if<ExecJob>(&job)) {
            out = e->stdout;
            err = e->stderr;
            spdlog::info("stream: exec in container {} ({}{}) over WebSocket {}", e->container_id.substr(0, 12),
                         e->cmd.empty() ? "" : e->cmd[0], e->tty ? ", tty" : "", proto->name);
            cmd = make_exec(io, std::move(*e));
        } else {
            auto& a = std::get<AttachJob>(job);
            out = a.stdout;
            err = a.stderr;
            spdlog::info("stream: attach to container {} over WebSocket {}", a.container_id.substr(0, 12), proto->name);
            cmd = make_attach(io, std::move(a), offload());
        }
        track(cmd);
        auto s = std::make_shared<WsCommand<Stream>>(std::forward<Stream>(stream), *proto, opts.idle_timeout, cmd,
                                                     out, err);
        sessions.add(s);
        s->accept(std::move(req));
    }
};

StreamServer::StreamServer(Options options, runtime::ContainerManager& containers, runtime::PodManager& pods)
    : impl_(std::make_unique<Impl>(std::move(options), containers, pods)) {}

StreamServer::~StreamServer() { stop(); }

void StreamServer::start() {
    auto& i = *impl_;
    if (i.opts.tls) {
        i.tls = std::make_unique<ssl::context>(ssl::context::tls_server);
        i.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                           ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
        error_code ec;
        i.tls->use_certificate_chain_file(i.opts.tls_cert, ec);
        if (ec)
            throw Error(Code::InvalidArgument,
                        "streaming TLS certificate " + i.opts.tls_cert + ": " + ec.message());
        i.tls->use_private_key_file(i.opts.tls_key, ssl::context::pem, ec);
        if (ec) throw Error(Code::InvalidArgument, "streaming TLS key " + i.opts.tls_key + ": " + ec.message());
    }
    error_code ec;
    const auto addr = asio::ip::make_address(i.opts.address, ec);
    if (ec) throw Error(Code::InvalidArgument, "stream_address " + i.opts.address + ": " + ec.message());
    unsigned port = 0;
    const auto& ps = i.opts.port;
    if (std::from_chars(ps.data(), ps.data() + ps.size(), port).ec != std::errc() || port > 65535)
        throw Error(Code::InvalidArgument, "stream_port " + ps + " is not a port number");
    const tcp::endpoint ep(addr, static_cast<unsigned short>(port));
    auto acc = std::make_unique<tcp::acceptor>(i.io);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        const std::string where = (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" + ps;
        throw Error(Code::Unavailable, "streaming server: cannot listen on " + where + ": " + ec.message(),
                    ec.value());
    }
    ::fcntl(acc->native_handle(), F_SETFD, FD_CLOEXEC);
    const auto bound = acc->local_endpoint();
    {
        std::lock_guard lock(i.mu);
        i.address = (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
                    std::to_string(bound.port());
    }
    i.acceptor = std::move(acc);
    i.accept();
    i.thread = std::thread([&i] {
        for (;;) {
            try {
                i.io.run();
                return;
            } catch (const std::exception& e) {
                spdlog::error("stream: {}", e.what());
            }
        }
    });
    spdlog::info("streaming server on {}://{}", i.tls ? "https" : "http", address());
}

void StreamServer::stop() {
    auto& i = *impl_;
    if (!i.thread.joinable()) return;
    spdlog::debug("stream: stopping");
    auto on_io = [&i]<class F>(F fn) {
        auto p = std::make_shared<std::promise<decltype(fn())>>();
        auto f = p->get_future();
        asio::post(i.io, [p, fn] { p->set_value(fn()); });
        return f.wait_for(std::chrono::seconds(5)) == std::future_status::ready ? std::optional(f.get())
                                                                                 : std::nullopt;
    };
    on_io([&i] {
        error_code ec;
        i.acceptor->close(ec);
        for (auto& s : i.sessions.all()) s->shutdown();
        return 0;
    });
    // The commands of the sessions just closed got SIGHUP; those that ignore
    // it get SIGKILL 5 s later (their timers run on the I/O thread). Wait for
    // them, a little longer than that.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(5500);
    for (bool logged = false;;) {
        const auto n = on_io([&i] { return i.running_commands(); });
        if (!n || *n == 0 || std::chrono::steady_clock::now() >= deadline) break;
        if (!std::exchange(logged, true))
            spdlog::info("stream: waiting for {} exec'd command(s) to end (SIGKILL 5 s after SIGHUP)", *n);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // Let the sessions' last handlers run (sockets close).
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    i.work.reset();
    i.io.stop();
    i.thread.join();
    // Whatever still runs gets SIGKILL now (the I/O thread is gone: no race).
    for (auto& w : i.commands)
        if (auto c = w.lock()) c->kill();
    i.commands.clear();
    i.blocking->join();  // a resize in progress ends within its 5 s timeout
    spdlog::debug("stream: stopped");
    {
        std::lock_guard lock(i.mu);
        i.address.clear();
    }
}

std::string StreamServer::address() const {
    std::lock_guard lock(impl_->mu);
    return impl_->address;
}

namespace {

void check_streams(bool tty, bool in, bool out, bool err) {
    if (!in && !out && !err)
        throw Error(Code::InvalidArgument, "one of stdin, stdout, or stderr must be set");
    if (tty && err) throw Error(Code::InvalidArgument, "tty and stderr cannot both be true");
}

runtime::ContainerRecord running_container(runtime::ContainerManager& containers, const std::string& id) {
    if (id.empty()) throw Error(Code::InvalidArgument, "container_id is required");
    auto r = containers.status(id);
    if (r.state != runtime::ContainerState::Running)
        throw Error(Code::FailedPrecondition, "container " + r.id + " is not running");
    return r;
}

}  // namespace

std::string StreamServer::exec(const ExecRequest& req) {
    if (req.cmd.empty() || req.cmd[0].empty()) throw Error(Code::InvalidArgument, "cmd is required");
    check_streams(req.tty, req.stdin, req.stdout, req.stderr);
    const auto r = running_container(impl_->containers, req.container_id);
    return impl_->url("exec", ExecJob{.container_id = r.id,
                                      .runtime_path = r.runtime_path,
                                      .runtime_root = r.runtime_root,
                                      .cmd = req.cmd,
                                      .pid_dir = r.bundle,
                                      .tty = req.tty,
                                      .stdin = req.stdin,
                                      .stdout = req.stdout,
                                      .stderr = req.stderr});
}

std::string StreamServer::attach(const AttachRequest& req) {
    check_streams(req.tty, req.stdin, req.stdout, req.stderr);
    const auto r = running_container(impl_->containers, req.container_id);
    if (req.stdin && !r.config.stdin)
        throw Error(Code::InvalidArgument, "container " + r.id + " was not created with stdin");
    return impl_->url("attach", AttachJob{.container_id = r.id,
                                          .socket_dir = r.socket_dir(),
                                          .exit_dir = impl_->containers.exit_dir(),
                                          .stdin_once = r.config.stdin_once,
                                          .container_tty = r.config.tty,
                                          .tty = req.tty,
                                          .stdin = req.stdin,
                                          .stdout = req.stdout,
                                          .stderr = req.stderr});
}

std::string StreamServer::port_forward(const PortForwardRequest& req) {
    if (req.pod_id.empty()) throw Error(Code::InvalidArgument, "pod_sandbox_id is required");
    std::vector<std::uint16_t> ports;
    for (auto p : req.ports) {
        if (p <= 0 || p > 65535)
            throw Error(Code::InvalidArgument, "port " + std::to_string(p) + " is out of range");
        ports.push_back(static_cast<std::uint16_t>(p));
    }
    const auto pod = impl_->pods.status(req.pod_id);
    if (pod.state != runtime::PodState::Ready)
        throw Error(Code::FailedPrecondition, "pod sandbox " + pod.id + " is not ready");
    return impl_->url("portforward", PortForwardJob{pod.id, pod.netns, std::move(ports)});
}

}  // namespace crisd::stream
