// A SPDY/3.1 streaming client for tests, speaking to a runtime's streaming server the
// way client-go (kubectl, the API server, the kubelet proxy) does:
//   - an HTTP/1.1 request with "Connection: Upgrade", "Upgrade: SPDY/3.1" and one
//     "X-Stream-Protocol-Version" line per protocol, most preferred first;
//   - remote command (exec/attach, client-go's tools/remotecommand v2..v4): the error
//     stream first, then stdin, stdout, stderr (not with a tty) and resize (tty, v3+),
//     each created after the previous one's SYN_REPLY, streams named by their
//     "streamtype" header; stdin written then half-closed; resize events as JSON
//     {"Width":..,"Height":..}; stdout and stderr read until FIN; the error stream read
//     to the end and decoded (v4: a metav1.Status, exit code from the NonZeroExitCode
//     cause "ExitCode");
//   - port forward (client-go's tools/portforward, portforward.k8s.io): an error stream
//     (half-closed at once) and a data stream, both with "port" and "requestid" headers;
//     the request bytes written, the data read until the server closes it.
// http:// over TCP, or https:// with OpenSSL (the server's certificate is checked
// against tls_ca_file and the URL's host when one is given). A refused upgrade (404 for a bad token, 400, 403) is returned
// with its HTTP status, not thrown. Connection failures and timeouts throw crisd::Error.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace crisd::test {

inline const std::vector<std::string> kRemoteCommandProtocols = {
    "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"};
inline const std::vector<std::string> kPortForwardProtocols = {"portforward.k8s.io"};

struct RemoteCommandOptions {
    bool want_stdin = false;   // the CRI request's stdin/stdout/stderr
    bool want_stdout = true;
    bool want_stderr = true;
    bool tty = false;
    std::string stdin_data;     // written once the streams are up
    bool close_stdin = true;    // half-close stdin after stdin_data (as `echo x | kubectl exec -i`)
    std::vector<std::pair<uint16_t, uint16_t>> resizes;  // (width, height), sent before stdin
    // Return as soon as stdout holds this text (attach to a container that keeps
    // running); the result then has exit_code -1 and status_json empty.
    std::string until_stdout_contains;
    std::vector<std::string> protocols = kRemoteCommandProtocols;
    std::string method = "POST";  // kubectl exec/attach use POST
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    std::string tls_ca_file;      // https://: verify the server against this PEM file ("" : no check)
};

struct RemoteCommandResult {
    int http_status = 0;       // 101 when upgraded; otherwise the refusal's status
    std::string http_body;     // the refusal's body
    std::string protocol;      // the negotiated X-Stream-Protocol-Version
    std::string stdout_data;
    std::string stderr_data;
    std::string status_json;   // the error stream's content
    int exit_code = -1;        // 0: success; N: NonZeroExitCode; -1: unknown or an error
    std::string error;         // a failure that is not an exit code (v1-v3 text, v4 message)
};

RemoteCommandResult remote_command(const std::string& url, const RemoteCommandOptions& options = {});

struct PortForwardOptions {
    bool half_close = true;  // close our side of the data stream after the request
    std::string request_id = "0";
    std::vector<std::string> protocols = kPortForwardProtocols;
    std::string method = "POST";
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    std::string tls_ca_file;  // as in RemoteCommandOptions
};

struct PortForwardResult {
    int http_status = 0;
    std::string http_body;
    std::string protocol;
    std::string data;   // what came back on the data stream
    std::string error;  // what came on the error stream
};

PortForwardResult port_forward(const std::string& url, uint16_t port, const std::string& request,
                               const PortForwardOptions& options = {});
// Many connections to one port on one session (as kubectl port-forward carries
// them): every pair of streams is opened first, then each request is sent; the
// results come in the order of `requests` (request ids "0", "1", ...).
std::vector<PortForwardResult> port_forward_many(const std::string& url, uint16_t port,
                                                const std::vector<std::string>& requests,
                                                const PortForwardOptions& options = {});

// The exit code in a v4 error-stream Status JSON: 0 for Success, N for
// NonZeroExitCode with an "ExitCode" cause, -1 otherwise (message in *error).
int decode_v4_status(const std::string& json, std::string* error);

}  // namespace crisd::test
