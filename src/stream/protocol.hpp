// The Kubernetes streaming protocols' pure parts, shared by the WebSocket and
// SPDY transports (k8s.io/apimachinery/pkg/util/remotecommand, httpstream/
// wsstream, kubelet's cri/streaming/remotecommand and portforward):
// subprotocol negotiation, channel framing, the error stream's Status JSON,
// terminal resize messages, port numbers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crisd::stream::protocol {

// Remote command channels (WebSocket channel byte; SPDY streamtype).
inline constexpr std::uint8_t kStdin = 0;
inline constexpr std::uint8_t kStdout = 1;
inline constexpr std::uint8_t kStderr = 2;
inline constexpr std::uint8_t kError = 3;
inline constexpr std::uint8_t kResize = 4;
// v5.channel.k8s.io: a message {255, channel} closes that channel's input.
inline constexpr std::uint8_t kStreamClose = 255;

// WebSocket subprotocols.
struct WsProtocol {
    std::string name;    // as negotiated ("" when the client offered none)
    int version = 1;     // 1 (channel.k8s.io, base64.channel.k8s.io), 4 or 5
    bool base64 = false; // text messages: '0'+channel then base64 data
};
// Remote command: v5.channel.k8s.io, v4.channel.k8s.io, v4.base64.channel.k8s.io,
// channel.k8s.io, base64.channel.k8s.io, or none ("": binary channels).
// `offered` is the Sec-WebSocket-Protocol header (comma separated, client
// preference first). nullopt: the client offered only unknown protocols.
std::optional<WsProtocol> negotiate_ws_remotecommand(std::string_view offered);
// Port forward: v4.channel.k8s.io, v4.base64.channel.k8s.io, or none.
std::optional<WsProtocol> negotiate_ws_portforward(std::string_view offered);

// SPDY remote command protocols (X-Stream-Protocol-Version, repeatable):
// v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io.
// Returns the first the client offers that crisd supports, "" when none.
// v5.channel.k8s.io is not offered over SPDY: it differs from v4 only by
// the WebSocket close signal (SPDY half-closes stdin's stream instead), and
// clients that offer it offer v4 too.
std::string negotiate_spdy_remotecommand(const std::vector<std::string>& offered);
inline constexpr const char* kSpdyRemoteCommandProtocols[] = {"v4.channel.k8s.io", "v3.channel.k8s.io",
                                                              "v2.channel.k8s.io", "channel.k8s.io"};
// Port forward: exactly portforward.k8s.io, or "" when the client offers only others.
inline constexpr const char* kSpdyPortForwardProtocol = "portforward.k8s.io";
std::string negotiate_spdy_portforward(const std::vector<std::string>& offered);
int spdy_version(std::string_view protocol);  // 4, 3, 2 or 1

// One WebSocket message from a channel's bytes (binary: channel byte + data;
// base64: '0'+channel + base64(data)).
std::string ws_encode(const WsProtocol& p, std::uint8_t channel, std::string_view data);
// A client's message: channel and data (base64 decoded). nullopt for an empty
// message or bad base64.
struct WsMessage {
    std::uint8_t channel = 0;
    std::string data;
};
std::optional<WsMessage> ws_decode(const WsProtocol& p, std::string_view message);

std::string base64_encode(std::string_view in);
std::optional<std::string> base64_decode(std::string_view in);

// The error stream's content at the end of a command (v4 and later: a
// metav1.Status as JSON; older protocols: the plain message or nothing).
//   exit 0      {"metadata":{},"status":"Success"}
//   exit N      {"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: ...",
//                "reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"N"}]}}
//   error text  {"metadata":{},"status":"Failure","message":TEXT,"reason":"InternalError",
//                "details":{"causes":[{"message":TEXT}]},"code":500}
std::string exit_status(int version, int exit_code);
std::string error_status(int version, const std::string& message);

// Terminal sizes from the resize stream: JSON objects {"Width":W,"Height":H}
// as they arrive, possibly split or several in one piece.
struct TerminalSize {
    unsigned width = 0;
    unsigned height = 0;
};
class ResizeDecoder {
public:
    void feed(std::string_view bytes) { buf_.append(bytes); }
    // The next complete size; nullopt when more bytes are needed. A malformed
    // object is skipped.
    std::optional<TerminalSize> next();

private:
    std::string buf_;
};

// Port forward over WebSocket: each port's data and error channel start with
// the port number, two bytes little-endian.
std::string port_prefix(std::uint16_t port);
// "?port=80&port=8080" → {80, 8080}; nullopt on a malformed or out-of-range port.
std::optional<std::vector<std::uint16_t>> ports_from_query(std::string_view target);

}  // namespace crisd::stream::protocol
