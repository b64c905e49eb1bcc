// A test client for crisd's streaming server over WebSocket (Boost.Beast):
// the Kubernetes channel protocols as kubectl and the kubelet speak them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace crisd::test {

struct WsMessage {
    std::uint8_t channel = 0;
    std::string data;
};

class WsStream {
public:
    // Connects to an http:// URL with a WebSocket upgrade offering `protocol`
    // ("" offers none). Throws std::runtime_error when the upgrade is refused;
    // http_status() tells the status then (see ws_upgrade_status).
    WsStream(const std::string& url, const std::string& protocol,
             std::chrono::milliseconds timeout = std::chrono::seconds(30));
    ~WsStream();

    const std::string& protocol() const;  // as the server chose it
    void send(std::uint8_t channel, const std::string& data);
    void close_channel(std::uint8_t channel);  // v5: {255, channel}
    void resize(unsigned width, unsigned height);  // channel 4, {"Width":..,"Height":..}
    // The next message; nullopt when the server closed the WebSocket.
    // Throws on timeout.
    std::optional<WsMessage> read();
    void close();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The HTTP status the server answers a WebSocket upgrade with (101 when it
// accepts; the connection is then closed).
int ws_upgrade_status(const std::string& url, const std::string& protocol = "v4.channel.k8s.io",
                      std::string* body = nullptr);

// A whole remote command: sends `stdin` (then closes it with v5), reads
// everything until the server closes.
struct CommandResult {
    std::string out;
    std::string err;
    std::string status;  // the error channel's content (Status JSON for v4+)
    int messages = 0;
};
CommandResult ws_command(const std::string& url, const std::string& protocol = "v5.channel.k8s.io",
                         const std::optional<std::string>& stdin = std::nullopt,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

// The exit code a v4 Status JSON reports: 0 for Success, the ExitCode cause
// for NonZeroExitCode, -1 otherwise.
int exit_code_of_status(const std::string& status_json);

}  // namespace crisd::test
