// The streaming server's backends, independent of the transport (WebSocket or
// SPDY): a remote command (exec or attach) reads and writes the container's
// stdio; a port connection carries one forwarded TCP connection. Everything
// runs on the server's io_context (one thread); objects are shared_ptr-owned
// and keep themselves alive while an operation is pending. Callbacks into the
// transport hold weak references: a backend may outlive its session and the
// other way round.
//
// Backpressure both ways: output pauses while the transport is congested
// (Sink::congested, on_drained); input (stdin, port-forward data) that the
// backend has not written yet is input_queued(), and the transport stops
// reading its client while that is above kInputHigh, until it is down to
// kInputLow (the backend calls input_drained after each write that leaves
// kInputLow or less; the transport checks again when a backend goes away). moby/spdystream ignores
// SPDY's windows, so not reading the socket is the only brake there is.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stream/protocol.hpp"

namespace crisd::stream {

namespace asio = boost::asio;

inline constexpr std::size_t kInputHigh = 1024 * 1024;  // queued input above which the client is not read
inline constexpr std::size_t kInputLow = 256 * 1024;    // ... and at or below which reading resumes

// Runs blocking work (a control request to crisd-conmon) away from the I/O thread.
using Offload = std::function<void(std::function<void()>)>;

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
    // A write of input left input_queued() at kInputLow or below.
    virtual void input_drained() = 0;
};

class RemoteCommand {
public:
    virtual ~RemoteCommand() = default;
    virtual void start(std::weak_ptr<Sink> sink) = 0;
    virtual void input(std::string data) = 0;   // stdin
    virtual void close_input() = 0;             // stdin EOF
    virtual void resize(protocol::TerminalSize size) = 0;
    // Bytes of stdin accepted and not yet written.
    virtual std::size_t input_queued() const = 0;
    // The client went away: end the command (SIGHUP, SIGKILL 5 s later) and
    // close everything; finish() is not called after this.
    virtual void cancel() = 0;
    // True while a process of this command still runs (exec: the runtime).
    virtual bool running() const = 0;
    // SIGKILL now (the server is stopping and waits no longer).
    virtual void kill() = 0;
};

struct ExecJob {
    std::string container_id;
    std::string runtime_path;  // runc / crun
    std::string runtime_root;  // --root
    std::vector<std::string> cmd;
    std::string pid_dir;  // where the runtime writes the command's pid (--pid-file); the bundle
    bool tty = false;
    bool stdin = false;
    bool stdout = false;
    bool stderr = false;
};

struct AttachJob {
    std::string container_id;
    std::string socket_dir;   // crisd-conmon's sockets
    std::string exit_dir;     // <exit_dir>/<id> exists once the container has exited
    bool stdin_once = false;  // the container's: conmon closes its stdin when we close ours
    bool container_tty = false;
    bool tty = false;  // the request's
    bool stdin = false;
    bool stdout = false;
    bool stderr = false;
};

std::shared_ptr<RemoteCommand> make_exec(asio::io_context& io, ExecJob job);
// Resizes (a request to crisd-conmon that may block) go through `offload`.
std::shared_ptr<RemoteCommand> make_attach(asio::io_context& io, AttachJob job, Offload offload);

// The argv of `<runtime> exec` for a job (pure; unit-tested).
std::vector<std::string> exec_argv(const ExecJob& job, const std::string& pid_file = "");

// One forwarded connection to 127.0.0.1:<port> in a network namespace.
class PortConn {
public:
    struct Callbacks {
        std::function<void(std::string)> data;   // bytes from the pod's port
        std::function<void(std::string)> error;  // a failure, as text for the error stream
        std::function<void()> done;              // the port's side closed (after the last data)
        std::function<bool()> congested;
        std::function<void(std::function<void()>)> on_drained;
        std::function<void()> input_drained;     // a write left input_queued() at kInputLow or below
    };
    virtual ~PortConn() = default;
    virtual void start(Callbacks cb) = 0;
    virtual void input(std::string data) = 0;
    virtual void close_input() = 0;  // shutdown(SHUT_WR) once written
    virtual std::size_t input_queued() const = 0;  // bytes from the client not yet written to the port
    virtual void cancel() = 0;
};

// netns: "/run/crisd/ns/<pod>/net", or "" for a pod on the host network.
std::shared_ptr<PortConn> make_port_conn(asio::io_context& io, std::string netns, std::uint16_t port,
                                         std::string pod_id);

}  // namespace crisd::stream
