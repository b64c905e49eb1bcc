// A D-Bus connection (sdbus-c++) with its own dispatch thread, that can be
// dropped and opened again: after the bus daemon restarts or the socket
// breaks, the next get() connects anew and runs the owner's attach() again
// (matches, proxies, objects, bus names). Used by the systemd client and the
// io.crisd.Daemon1 object; only their .cpp files include this header.
//
// Threads: sdbus-c++ serialises access to the sd-bus connection; callbacks
// (signals, method calls to our objects) run on the dispatch thread and must
// not throw anything but sdbus::Error. After a synchronous call from another
// thread, call wake() so that messages it queued get dispatched.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <sdbus-c++/IConnection.h>

#include "common/fd.hpp"

namespace crisd::bus {

// What an owner sets up on each new connection; destroyed before it.
struct Attachment {
    virtual ~Attachment() = default;
};

class Link {
public:
    ~Link();
    sdbus::IConnection& conn() { return *conn_; }
    Attachment* attachment() { return attachment_.get(); }
    bool dead() const { return dead_.load(); }
    std::uint64_t generation() const { return generation_; }

private:
    friend class Connection;
    std::unique_ptr<sdbus::IConnection> conn_;
    std::unique_ptr<Attachment> attachment_;
    std::atomic<bool> dead_{false};
    std::uint64_t generation_ = 0;
};

struct ConnectionOptions {
    std::string address;  // "" = the system bus
    std::string what;     // for log lines: "systemd client", "io.crisd.Daemon1"
    // Reconnect by itself (with a growing delay up to max_retry) instead of on
    // the next get().
    bool keep_connected = false;
    std::chrono::milliseconds max_retry{30000};
    // Runs on a new connection before it is used; may throw (the connection is
    // then given up and the error passed on).
    std::function<std::unique_ptr<Attachment>(sdbus::IConnection&)> attach;
    // Runs (on the dispatch thread) when a live connection is lost.
    std::function<void()> on_lost;
};

class Connection {
public:
    explicit Connection(ConnectionOptions options);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // The live connection, connecting first when there is none. Throws
    // crisd::Error (Unavailable) when the bus cannot be reached.
    std::shared_ptr<Link> get();
    // The live connection or nullptr, never connecting.
    std::shared_ptr<Link> current();

    // Gives up `link` (a call on it failed with a transport error).
    void drop(const std::shared_ptr<Link>& link);

    // Makes the dispatch thread look at the connection again.
    void wake();

private:
    std::shared_ptr<Link> connect_locked();
    void loop();
    void retry_wait(std::chrono::milliseconds delay);

    ConnectionOptions opt_;
    std::mutex mu_;
    std::shared_ptr<Link> link_;
    std::uint64_t generations_ = 0;
    UniqueFd wake_fd_;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace crisd::bus
