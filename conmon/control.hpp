// The control socket <socket-dir>/ctl (SOCK_SEQPACKET, mode 0600): crisd's
// requests to a running conmon, one per connection (see
// src/monitor/protocol.hpp for the wire format): start, resize, reopen, exec.
// Replies are queued and sent as the client reads; nothing here blocks the loop.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "loop.hpp"

namespace crisd::conmon {

class ControlConn : public std::enable_shared_from_this<ControlConn> {
public:
    ControlConn(Loop& loop, UniqueFd fd) : loop_(loop), fd_(std::move(fd)) {}
    ~ControlConn();
    void send(std::string message);
    // Closes once everything queued is sent.
    void finish();
    bool gone() const { return !fd_; }
    // Called once when the peer goes away before finish().
    std::function<void()> on_gone;

private:
    friend class ControlServer;
    void on_events(uint32_t events);
    void flush();
    void close();

    Loop& loop_;
    UniqueFd fd_;
    uint64_t token_ = 0;
    std::deque<std::string> out_;
    bool finishing_ = false;
    bool request_read_ = false;
    std::function<void(std::shared_ptr<ControlConn>, std::string)> on_request_;
};

struct ExecRequest {
    int64_t timeout_ms = 0;  // 0: none
    int64_t cap = 0;         // bytes kept of stdout and of stderr each; 0: default
    std::vector<std::string> argv;
};

class ControlServer {
public:
    struct Hooks {
        std::function<void(std::shared_ptr<ControlConn>)> start;
        std::function<void(unsigned rows, unsigned cols)> resize;  // throws crisd::Error
        std::function<void()> reopen;                              // throws crisd::Error
        std::function<void(ExecRequest, std::shared_ptr<ControlConn>)> exec;
    };
    // Throws crisd::Error naming the path.
    ControlServer(Loop& loop, const std::string& path, Hooks hooks);
    ~ControlServer();
    void close();

private:
    void on_accept();
    void on_request(const std::shared_ptr<ControlConn>& conn, const std::string& request);

    Loop& loop_;
    std::string path_;
    Hooks hooks_;
    UniqueFd listen_;
    uint64_t token_ = 0;
};

}  // namespace crisd::conmon
