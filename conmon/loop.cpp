#include "loop.hpp"

#include <cerrno>
#include <memory>

#include "common/error.hpp"

namespace crisd::conmon {

Loop::Loop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) throw_errno("creating epoll instance");
}

uint64_t Loop::add(int fd, uint32_t events, Handler handler) {
    const uint64_t token = next_token_++;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("adding fd " + std::to_string(fd) + " to epoll");
    sources_.emplace(token, Source{fd, std::make_shared<Handler>(std::move(handler))});
    return token;
}

void Loop::modify(uint64_t token, uint32_t events) {
    const auto it = sources_.find(token);
    if (it == sources_.end()) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second.fd, &ev) != 0)
        throw_errno("changing epoll events of fd " + std::to_string(it->second.fd));
}

void Loop::remove(uint64_t token) {
    const auto it = sources_.find(token);
    if (it == sources_.end()) return;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
    sources_.erase(it);
}

void Loop::run() {
    epoll_event events[32];
    stop_ = false;
    while (!stop_) {
        const int n = ::epoll_wait(epoll_.get(), events, 32, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("waiting on epoll");
        }
        for (int i = 0; i < n && !stop_; ++i) {
            const auto it = sources_.find(events[i].data.u64);
            if (it == sources_.end()) continue;  // removed by an earlier handler in this batch
            auto handler = it->second.handler;   // keeps it alive if it removes itself
            (*handler)(events[i].events);
        }
    }
}

}  // namespace crisd::conmon
