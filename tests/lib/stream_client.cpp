#include "stream_client.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <nlohmann/json.hpp>

#include <stdexcept>

namespace crisd::test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

struct Url {
    std::string host, port, target;
};

Url parse(const std::string& url) {
    const std::string prefix = "http://";
    if (url.rfind(prefix, 0) != 0) throw std::runtime_error("not an http:// URL: " + url);
    const auto rest = url.substr(prefix.size());
    const auto slash = rest.find('/');
    const auto hostport = rest.substr(0, slash);
    Url u;
    u.target = slash == std::string::npos ? "/" : rest.substr(slash);
    const auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    u.port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
    if (!u.host.empty() && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
    return u;
}

void set_timeout(tcp::socket& s, std::chrono::milliseconds t) {
    timeval tv{};
    tv.tv_sec = t.count() / 1000;
    tv.tv_usec = (t.count() % 1000) * 1000;
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

struct WsStream::Impl {
    asio::io_context io;
    websocket::stream<tcp::socket> ws{io};
    std::string protocol;
};

WsStream::WsStream(const std::string& url, const std::string& protocol, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
    const auto u = parse(url);
    tcp::resolver resolver(impl_->io);
    asio::connect(impl_->ws.next_layer(), resolver.resolve(u.host, u.port));
    set_timeout(impl_->ws.next_layer(), timeout);
    impl_->ws.set_option(websocket::stream_base::decorator([protocol](websocket::request_type& req) {
        if (!protocol.empty()) req.set(http::field::sec_websocket_protocol, protocol);
    }));
    websocket::response_type res;
    beast::error_code ec;
    impl_->ws.handshake(res, u.host + ":" + u.port, u.target, ec);
    if (ec)
        throw std::runtime_error("WebSocket upgrade refused: HTTP " + std::to_string(res.result_int()) + " " +
                                 ec.message());
    impl_->protocol = std::string(res[http::field::sec_websocket_protocol]);
    impl_->ws.binary(true);
}

WsStream::~WsStream() {
    beast::error_code ec;
    impl_->ws.next_layer().close(ec);
}

const std::string& WsStream::protocol() const { return impl_->protocol; }

void WsStream::send(std::uint8_t channel, const std::string& data) {
    std::string msg(1, static_cast<char>(channel));
    msg += data;
    impl_->ws.write(asio::buffer(msg));
}

void WsStream::close_channel(std::uint8_t channel) {
    const std::string msg{static_cast<char>(255), static_cast<char>(channel)};
    impl_->ws.write(asio::buffer(msg));
}

void WsStream::resize(unsigned width, unsigned height) {
    send(4, nlohmann::json{{"Width", width}, {"Height", height}}.dump());
}

std::optional<WsMessage> WsStream::read() {
    beast::flat_buffer buf;
    beast::error_code ec;
    impl_->ws.read(buf, ec);
    if (ec == websocket::error::closed || ec == asio::error::eof || ec == asio::error::connection_reset)
        return std::nullopt;
    if (ec) throw std::runtime_error("WebSocket read: " + ec.message());
    const auto s = beast::buffers_to_string(buf.data());
    if (s.empty()) return WsMessage{255, ""};
    return WsMessage{static_cast<std::uint8_t>(s[0]), s.substr(1)};
}

void WsStream::close() {
    beast::error_code ec;
    impl_->ws.close(websocket::close_code::normal, ec);
}

int ws_upgrade_status(const std::string& url, const std::string& protocol, std::string* body) {
    const auto u = parse(url);
    asio::io_context io;
    tcp::resolver resolver(io);
    tcp::socket sock(io);
    asio::connect(sock, resolver.resolve(u.host, u.port));
    set_timeout(sock, std::chrono::seconds(10));
    http::request<http::empty_body> req(http::verb::get, u.target, 11);
    req.set(http::field::host, u.host + ":" + u.port);
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    req.set(http::field::sec_websocket_version, "13");
    if (!protocol.empty()) req.set(http::field::sec_websocket_protocol, protocol);
    http::write(sock, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.skip(false);
    beast::error_code ec;
    http::read_header(sock, buf, parser, ec);
    if (ec) throw std::runtime_error("reading the upgrade response: " + ec.message());
    const int status = static_cast<int>(parser.get().result_int());
    if (status != 101) {
        http::read(sock, buf, parser, ec);
        if (body) *body = parser.get().body();
    }
    return status;
}

CommandResult ws_command(const std::string& url, const std::string& protocol, const std::optional<std::string>& stdin,
                         std::chrono::milliseconds timeout) {
    WsStream ws(url, protocol, timeout);
    if (stdin) {
        if (!stdin->empty()) ws.send(0, *stdin);
        ws.close_channel(0);
    }
    CommandResult r;
    while (auto m = ws.read()) {
        ++r.messages;
        if (m->channel == 1) r.out += m->data;
        else if (m->channel == 2) r.err += m->data;
        else if (m->channel == 3) r.status += m->data;
    }
    return r;
}

int exit_code_of_status(const std::string& status_json) {
    const auto j = nlohmann::json::parse(status_json, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return -1;
    if (j.value("status", "") == "Success") return 0;
    if (j.value("reason", "") != "NonZeroExitCode") return -1;
    for (const auto& c : j["details"]["causes"])
        if (c.value("reason", "") == "ExitCode") return std::stoi(c.value("message", "-1"));
    return -1;
}

}  // namespace crisd::test
