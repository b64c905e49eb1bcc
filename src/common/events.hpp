// Event fan-out for streams such as GetContainerEvents: a publisher hands
// each event to every live subscriber's bounded queue; a subscriber that
// goes away (its shared_ptr dropped) is forgotten at the next event.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <spdlog/spdlog.h>

namespace crisd {

template <typename Event>
class EventQueue {
public:
    // Blocks up to `timeout` for the next event.
    std::optional<Event> next(std::chrono::milliseconds timeout) {
        std::unique_lock lock(mu_);
        if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return std::nullopt;
        auto e = std::move(queue_.front());
        queue_.pop_front();
        return e;
    }

    void push(const Event& e) {
        std::lock_guard lock(mu_);
        // A reader that does not read must not make crisd grow without bound.
        if (queue_.size() >= kMaxQueued) {
            if (!overflowed_) spdlog::warn("an event stream reader is not reading; dropping events");
            overflowed_ = true;
            return;
        }
        queue_.push_back(e);
        cv_.notify_one();
    }

private:
    static constexpr std::size_t kMaxQueued = 10000;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> queue_;
    bool overflowed_ = false;
};

template <typename Event>
class EventHub {
public:
    std::shared_ptr<EventQueue<Event>> subscribe() {
        auto q = std::make_shared<EventQueue<Event>>();
        std::lock_guard lock(mu_);
        subscribers_.push_back(q);
        return q;
    }

    void publish(const Event& e) {
        std::lock_guard lock(mu_);
        for (auto it = subscribers_.begin(); it != subscribers_.end();) {
            if (auto q = it->lock()) {
                q->push(e);
                ++it;
            } else {
                it = subscribers_.erase(it);
            }
        }
    }

private:
    std::mutex mu_;
    std::vector<std::weak_ptr<EventQueue<Event>>> subscribers_;
};

}  // namespace crisd
