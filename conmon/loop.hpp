// The one event loop of crisd-conmon: epoll on one thread. Every source is an
// fd (stdio pipes or the pty, sockets, signalfd, timerfd, the OOM eventfd or
// inotify). Handlers are addressed by a token, so an fd closed and reused
// within one epoll batch never reaches the wrong handler.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "common/fd.hpp"

namespace crisd::conmon {

class Loop {
public:
    using Handler = std::function<void(uint32_t events)>;

    Loop();
    // Returns a token for modify()/remove(). Throws crisd::Error.
    uint64_t add(int fd, uint32_t events, Handler handler);
    void modify(uint64_t token, uint32_t events);
    // Safe from inside any handler, including the removed one's.
    void remove(uint64_t token);
    // Runs until stop() (again after a stop); handler exceptions propagate.
    void run();
    void stop() { stop_ = true; }

private:
    struct Source {
        int fd;
        std::shared_ptr<Handler> handler;
    };
    UniqueFd epoll_;
    std::unordered_map<uint64_t, Source> sources_;
    uint64_t next_token_ = 1;
    bool stop_ = false;
};

}  // namespace crisd::conmon
