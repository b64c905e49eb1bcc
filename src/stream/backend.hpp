// The streaming server's backends, independent of the transport (WebSocket or
// SPDY): a remote command (exec or attach) reads and writes the container's
// stdio; a port connection carries one forwarded TCP connection. Everything
// runs on the server's io_context (one thread); objects are shared_ptr-owned
// and keep themselves alive while an operation is pending.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stream/protocol.hpp"

namespace crisd::stream {

namespace asio = boost::asio;

// How a remote command ended.
struct Outcome {
    std::optional<int> exit_code;  // exec: the exit status (or 128+signal); attach: 0 when it ended
    std::string error;             // set when the command could not run or failed in crisd
};

// The transport side of a remote command.
class Sink {
public:
    virtual ~Sink() = default;
    // stdout or stderr bytes (protocol::kStdout, kStderr).
    virtual void output(std::uint8_t channel, std::string data) = 0;
    // True while too much output waits to be written to the client; the
    // backend then waits for on_drained before reading more.
    virtual bool congested() const = 0;
    virtual void on_drained(std::function<void()> fn) = 0;
    // Once, after the last output.
    virtual void finish(const Outcome& outcome) = 0;
};

class RemoteCommand {
public:
    virtual ~RemoteCommand() = default;
    virtual void start(std::weak_ptr<Sink> sink) = 0;
    virtual void input(std::string data) = 0;   // stdin
    virtual void close_input() = 0;             // stdin EOF
    virtual void resize(protocol::TerminalSize size) = 0;
    // The client went away: end the command (SIGHUP, then SIGKILL) and close
    // everything; finish() is not called after this.
    virtual void cancel() = 0;
};

struct ExecJob {
    std::string container_id;
    std::string runtime_path;  // runc / crun
    std::string runtime_root;  // --root
    std::vector<std::string> cmd;
    bool tty = false;
    bool stdin = false;
    bool stdout = false;
    bool stderr = false;
};

struct AttachJob {
    std::string container_id;
    std::string socket_dir;   // crisd-conmon's sockets
    bool container_tty = false;
    bool tty = false;  // the request's
    bool stdin = false;
    bool stdout = false;
    bool stderr = false;
};

std::shared_ptr<RemoteCommand> make_exec(asio::io_context& io, ExecJob job);
std::shared_ptr<RemoteCommand> make_attach(asio::io_context& io, AttachJob job);

// The argv of `<runtime> exec` for a job (pure; unit-tested).
std::vector<std::string> exec_argv(const ExecJob& job);

// One forwarded connection to 127.0.0.1:<port> in a network namespace.
class PortConn {
public:
    struct Callbacks {
        std::function<void(std::string)> data;   // bytes from the pod's port
        std::function<void(std::string)> error;  // a failure, as text for the error stream
        std::function<void()> done;              // the port's side closed (after the last data)
        std::function<bool()> congested;
        std::function<void(std::function<void()>)> on_drained;
    };
    virtual ~PortConn() = default;
    virtual void start(Callbacks cb) = 0;
    virtual void input(std::string data) = 0;
    virtual void close_input() = 0;  // shutdown(SHUT_WR) once written
    virtual void cancel() = 0;
};

// netns: "/run/crisd/ns/<pod>/net", or "" for a pod on the host network.
std::shared_ptr<PortConn> make_port_conn(asio::io_context& io, std::string netns, std::uint16_t port,
                                         std::string pod_id);

}  // namespace crisd::stream
