// The server side of exec/attach over SPDY, as the kubelet's streaming server does it
// (pkg/kubelet/cri/streaming/remotecommand/httpstream.go), sans-IO like spdy::Session:
// after the HTTP upgrade, the client opens one stream per role, named by its
// "streamtype" header (error, stdin, stdout, stderr, resize); each gets its SYN_REPLY at
// once. When every expected stream is up, on_ready fires and the command may start.
//
//   expected = error + stdin? + stdout? + stderr? (never with a tty) + resize? (tty, v3+)
//
// The caller owns the socket and the clock: it feeds what it reads, writes
// take_output(), and gives up when ready() is still false after its stream-creation
// timeout (the kubelet waits 30 s). When the command ends, finish() writes the error
// stream's content (the caller builds it: v4 a metav1.Status JSON, v1-v3 plain text or
// nothing), half-closes stdout, stderr and error, and says GOAWAY. done() is then true
// once all of it is in take_output(); the caller writes it, shuts down its write side
// and closes the socket when the client has closed (or after a short linger).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "stream/spdy.hpp"

namespace crisd::stream::spdy {

// The remote-command protocol version from its X-Stream-Protocol-Version name:
// v4.channel.k8s.io 4, v3 3, v2 2, channel.k8s.io (or none) 1; 0 for anything else.
int remotecommand_version(std::string_view protocol);

class RemoteCommandServer {
public:
    struct Expect {  // what the CRI Exec/Attach request asked for
        bool stdin = false;
        bool stdout = false;
        bool stderr = false;
        bool tty = false;
    };
    struct Callbacks {
        std::function<void()> on_ready;                         // all expected streams are up
        std::function<void(std::string_view)> on_stdin;        // bytes for the command's stdin
        std::function<void()> on_stdin_closed;                  // the client half-closed stdin
        std::function<void(std::string_view)> on_resize;       // raw bytes of the resize stream (JSON objects)
        std::function<void()> on_client_gone;                   // GOAWAY, or a stream the command needs was reset
    };

    // `protocol`: the negotiated X-Stream-Protocol-Version ("" for none: v1).
    RemoteCommandServer(std::string protocol, Expect expect, Callbacks callbacks, Options options = {});

    void feed(std::string_view bytes) { session_.feed(bytes); }  // throws crisd::Error on a protocol error
    std::string take_output() { return session_.take_output(); }
    bool wants_write() const { return session_.wants_write(); }

    bool ready() const { return ready_; }
    int version() const { return version_; }
    size_t expected_streams() const;

    // The command's output; dropped when the client did not ask for that stream.
    void write_stdout(std::string_view data);
    void write_stderr(std::string_view data);
    // Output waiting for the client's flow-control window plus output not yet taken:
    // stop reading the command while this is large.
    size_t pending_bytes() const { return session_.queued_bytes() + session_.output_bytes(); }

    // The end: `status` goes on the error stream (may be empty), then FIN everywhere
    // and GOAWAY. Before ready() it still answers on whatever error stream exists.
    void finish(std::string_view status);
    bool finished() const { return finished_; }
    bool done() const { return finished_ && session_.queued_bytes() == 0 && !session_.wants_write(); }

    Session& session() { return session_; }

private:
    spdy::Callbacks session_callbacks();
    void on_syn_stream(uint32_t id, const Headers& headers, bool fin);
    void on_data(uint32_t id, std::string_view data, bool fin);
    void on_rst(uint32_t id);
    void check_ready();

    int version_;
    Expect expect_;
    Callbacks cb_;
    Session session_;
    uint32_t error_ = 0, stdin_ = 0, stdout_ = 0, stderr_ = 0, resize_ = 0;
    size_t received_ = 0;
    bool ready_ = false;
    bool finished_ = false;
    bool stdin_closed_ = false;
};

}  // namespace crisd::stream::spdy
