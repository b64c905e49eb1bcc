// The streaming server: the HTTP(S) endpoint that kubectl exec/attach/
// port-forward reach through the kubelet. The CRI Exec, Attach and PortForward
// calls validate a request here and get back a URL with a single-use token
// (http(s)://<address>:<port>/{exec,attach,portforward}/<token>, valid for
// token_ttl); a client that connects there with a WebSocket (channel.k8s.io,
// base64.channel.k8s.io, v4.channel.k8s.io, v5.channel.k8s.io) or SPDY/3.1
// upgrade gets the command's stdin/stdout/stderr, its exit status and terminal
// resizes, or the pod's ports. An unknown, expired or reused token gets 404.
//
//   stream::StreamServer s(opts, containers, pods);
//   s.start();                        // binds, serves on its own thread
//   std::string url = s.exec({id, {"sh"}, tty, stdin, stdout, stderr});
//   s.stop();                         // closes the listener and every session
//
// Backends: exec runs `<runtime> exec` (runc/crun of the container's handler)
// as crisd's child, so the command joins the container's cgroup and
// namespaces without a D-Bus call; attach joins crisd-conmon's attach socket;
// port-forward connects to 127.0.0.1:<port> in the pod's network namespace.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace crisd::runtime {
class ContainerManager;
class PodManager;
}  // namespace crisd::runtime

namespace crisd::stream {

struct Options {
    std::string address = "127.0.0.1";  // crisd.api.stream_address
    std::string port = "0";             // crisd.api.stream_port; "0": an ephemeral port
    bool tls = false;                   // crisd.api.stream_enable_tls
    std::string tls_cert;               // PEM certificate (chain) file
    std::string tls_key;                // PEM private key file
    std::chrono::seconds idle_timeout{0};  // 0: none; a session without traffic this long is closed
    std::chrono::milliseconds token_ttl{std::chrono::minutes(1)};
};

struct ExecRequest {
    std::string container_id;
    std::vector<std::string> cmd;
    bool tty = false;
    bool stdin = false;
    bool stdout = false;
    bool stderr = false;
};

struct AttachRequest {
    std::string container_id;
    bool tty = false;
    bool stdin = false;
    bool stdout = false;
    bool stderr = false;
};

struct PortForwardRequest {
    std::string pod_id;
    std::vector<std::int32_t> ports;  // may be empty: the client names them
};

class StreamServer {
public:
    StreamServer(Options options, runtime::ContainerManager& containers, runtime::PodManager& pods);
    ~StreamServer();
    StreamServer(const StreamServer&) = delete;
    StreamServer& operator=(const StreamServer&) = delete;

    // Binds the address (crisd::Error naming it when it cannot), loads the TLS
    // certificate and key, and serves on a thread of its own.
    void start();
    // Stops accepting, closes every session (their processes get SIGHUP), joins.
    void stop();

    // "127.0.0.1:41234" once started (the port actually bound), else "".
    std::string address() const;

    // Validate the request (crisd::Error: NotFound, FailedPrecondition,
    // InvalidArgument) and return the URL of a new token.
    std::string exec(const ExecRequest& req);
    std::string attach(const AttachRequest& req);
    std::string port_forward(const PortForwardRequest& req);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace crisd::stream
