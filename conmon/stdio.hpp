// The container's stdio as conmon holds it: three pipes, or the master side of
// the pseudo-terminal the runtime hands over on the console socket. Output goes
// to one sink (log file, journal, attach clients); stdin is written without
// ever blocking the loop (a container that does not read its stdin only makes
// the buffer grow, up to a cap).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/fd.hpp"
#include "loop.hpp"

namespace crisd::conmon {

class Stdio {
public:
    using Sink = std::function<void(uint8_t stream, std::string_view data)>;

    // The ends the runtime's `create` gets (and the container inherits); -1 is /dev/null.
    struct ChildEnds {
        UniqueFd in, out, err;
    };

    Stdio(Loop& loop, Sink sink);

    // Pipes: creates them; returns the container's ends. with_stdin: else /dev/null.
    ChildEnds make_pipes(bool with_stdin);
    // Terminal: the pty master received over the console socket.
    void set_terminal(UniqueFd master, bool with_stdin);
    void set_sink(Sink sink) { sink_ = std::move(sink); }
    // Starts reading output.
    void start();

    bool stdin_open() const { return static_cast<bool>(stdin_); }
    void write_stdin(std::string_view data);
    // Bytes written with write_stdin that the container has not read yet.
    size_t stdin_pending() const { return stdin_pending_.size(); }
    // Runs when stdin_pending() drops to 0 (or stdin closes): a writer that
    // paused may send more.
    void set_on_stdin_drained(std::function<void()> fn) { on_stdin_drained_ = std::move(fn); }
    // Pipes: closes the container's stdin (it reads EOF) once what is pending
    // has been written. Terminal: sends ^D.
    void close_stdin();
    // Throws crisd::Error.
    void resize(unsigned rows, unsigned cols);
    // Reads whatever is buffered right now (the container has exited).
    void drain();
    bool terminal() const { return terminal_; }

private:
    struct Output {
        UniqueFd fd;
        uint64_t token = 0;
        uint8_t stream = 1;
    };
    bool read_once(Output& out);  // false at EOF
    void on_output(Output& out, uint32_t events);
    void flush_stdin();

    Loop& loop_;
    Sink sink_;
    bool terminal_ = false;
    Output out_[2];
    UniqueFd stdin_;
    uint64_t stdin_token_ = 0;
    std::string stdin_pending_;
    bool close_when_flushed_ = false;
    std::function<void()> on_stdin_drained_;
};

}  // namespace crisd::conmon
