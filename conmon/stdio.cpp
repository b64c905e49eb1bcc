#include "stdio.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "journal.hpp"

namespace crisd::conmon {

namespace {

constexpr size_t kStdinPendingMax = 4 * 1024 * 1024;

void set_nonblock(int fd, const char* what) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) throw_errno(std::string("making ") + what + " non-blocking");
}

}  // namespace

Stdio::Stdio(Loop& loop, Sink sink) : loop_(loop), sink_(std::move(sink)) {
    out_[0].stream = 1;
    out_[1].stream = 2;
}

Stdio::ChildEnds Stdio::make_pipes(bool with_stdin) {
    ChildEnds child;
    int p[2];
    for (int i = 0; i < 2; ++i) {
        if (::pipe2(p, O_CLOEXEC) != 0) throw_errno(i == 0 ? "creating the stdout pipe" : "creating the stderr pipe");
        out_[i].fd.reset(p[0]);
        (i == 0 ? child.out : child.err).reset(p[1]);
        set_nonblock(p[0], "an output pipe");
    }
    if (with_stdin) {
        if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("creating the stdin pipe");
        child.in.reset(p[0]);
        stdin_.reset(p[1]);
        set_nonblock(p[1], "the stdin pipe");
    }
    return child;
}

void Stdio::set_terminal(UniqueFd master, bool with_stdin) {
    terminal_ = true;
    set_nonblock(master.get(), "the terminal");
    if (with_stdin) {
        stdin_.reset(::fcntl(master.get(), F_DUPFD_CLOEXEC, 3));
        if (!stdin_) throw_errno("duplicating the terminal for stdin");
    }
    out_[0].fd = std::move(master);
}

void Stdio::start() {
    for (auto& out : out_) {
        if (!out.fd) continue;
        out.token = loop_.add(out.fd.get(), EPOLLIN, [this, &out](uint32_t ev) { on_output(out, ev); });
    }
}

bool Stdio::read_once(Output& out) {
    char buf[64 * 1024];
    const auto n = ::read(out.fd.get(), buf, sizeof buf);
    if (n > 0) {
        sink_(out.stream, std::string_view(buf, static_cast<size_t>(n)));
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    // 0: EOF on a pipe; EIO: every slave of the terminal is closed.
    if (out.token) loop_.remove(out.token);
    out.token = 0;
    out.fd.reset();
    return false;
}

void Stdio::on_output(Output& out, uint32_t events) {
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_once(out);
}

void Stdio::drain() {
    for (auto& out : out_) {
        // At most 4 MiB per stream: a writer that never stops cannot hold conmon.
        for (int i = 0; i < 64 && out.fd; ++i) {
            char buf[64 * 1024];
            const auto n = ::read(out.fd.get(), buf, sizeof buf);
            if (n > 0) {
                sink_(out.stream, std::string_view(buf, static_cast<size_t>(n)));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) break;
            if (out.token) loop_.remove(out.token);
            out.token = 0;
            out.fd.reset();
        }
    }
}

void Stdio::write_stdin(std::string_view data) {
    if (!stdin_) return;
    if (stdin_pending_.size() + data.size() > kStdinPendingMax) {
        diag::warning("container does not read its stdin: dropped " + std::to_string(data.size()) + " bytes");
        return;
    }
    stdin_pending_.append(data);
    flush_stdin();
}

void Stdio::flush_stdin() {
    while (!stdin_pending_.empty() && stdin_) {
        const auto n = ::write(stdin_.get(), stdin_pending_.data(), stdin_pending_.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            // EPIPE: the container closed its stdin; nothing more will be read.
            diag::info(std::string("container stdin closed: ") + std::strerror(errno));
            stdin_pending_.clear();
            if (stdin_token_) loop_.remove(stdin_token_);
            stdin_token_ = 0;
            stdin_.reset();
            if (on_stdin_drained_) on_stdin_drained_();
            return;
        }
        stdin_pending_.erase(0, static_cast<size_t>(n));
    }
    if (!stdin_) return;
    if (!stdin_pending_.empty()) {
        if (!stdin_token_) stdin_token_ = loop_.add(stdin_.get(), EPOLLOUT, [this](uint32_t) { flush_stdin(); });
        return;
    }
    if (stdin_token_) loop_.remove(stdin_token_);
    stdin_token_ = 0;
    if (close_when_flushed_) {
        close_stdin();
        return;
    }
    if (on_stdin_drained_) on_stdin_drained_();
}

void Stdio::close_stdin() {
    if (!stdin_) return;
    if (terminal_) {
        write_stdin("\x04");  // end of file for the terminal's reader; the terminal stays up for output
        return;
    }
    if (!stdin_pending_.empty()) {
        // The last bytes go first: closed once the container has read them.
        close_when_flushed_ = true;
        return;
    }
    close_when_flushed_ = false;
    if (stdin_token_) loop_.remove(stdin_token_);
    stdin_token_ = 0;
    stdin_.reset();
}

void Stdio::resize(unsigned rows, unsigned cols) {
    if (!terminal_ || !out_[0].fd) throw Error(Code::FailedPrecondition, "resize: the container has no terminal");
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    if (::ioctl(out_[0].fd.get(), TIOCSWINSZ, &ws) != 0) throw_errno("resizing the terminal");
}

}  // namespace crisd::conmon
