#include "status/status.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

#include <sdbus-c++/sdbus-c++.h>
#include <spdlog/spdlog.h>

#include "bus/bus.hpp"
#include "common/error.hpp"
#include "io.crisd.Daemon1.adaptor.h"

namespace crisd::status {
namespace {

// What the properties show; compared on refresh to know what changed.
struct Snapshot {
    bool runtime_ready = false;
    bool network_ready = false;
    Counts counts;
    std::string stream_address;
};

bool condition(const RuntimeStatus& st, const std::string& type) {
    for (const auto& c : st.conditions)
        if (c.type == type) return c.status;
    return false;
}

// Runs fn; anything it throws leaves as an sdbus::Error (sdbus-c++ only
// turns sdbus::Error into a D-Bus error reply).
template <typename Fn>
auto guarded(const char* what, Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const sdbus::Error&) {
        throw;
    } catch (const std::exception& e) {
        spdlog::warn("io.crisd.Daemon1.{}: {}", what, e.what());
        throw sdbus::Error("org.freedesktop.DBus.Error.Failed", std::string(what) + ": " + e.what());
    }
}

}  // namespace

struct Service::Impl {
    class Object;
    struct Attached : bus::Attachment {
        std::unique_ptr<Object> object;
    };

    Impl(const Provider& p, Options o);
    ~Impl();

    Snapshot read() const {
        const auto st = provider.status();
        return Snapshot{condition(st, "RuntimeReady"), condition(st, "NetworkReady"), provider.counts(),
                        provider.stream_address()};
    }
    Snapshot snapshot() const {
        std::lock_guard lock(mu);
        return snap;
    }
    void refresh();
    template <typename Fn>
    void with_object(Fn&& fn);
    void poll_loop();

    const Provider& provider;
    Options opt;
    mutable std::mutex mu;
    Snapshot snap;
    std::condition_variable cv;
    bool stopping = false;
    std::atomic<bool> published{false};
    std::unique_ptr<bus::Connection> bus;  // after the members its thread uses
    std::thread poller;
};

// The adaptor: method calls and property reads arrive on the bus thread.
class Service::Impl::Object final
    : public sdbus::AdaptorInterfaces<io::crisd::Daemon1_adaptor, sdbus::Properties_adaptor> {
public:
    Object(sdbus::IConnection& conn, Impl& impl) : AdaptorInterfaces(conn, kObjectPath), impl_(impl) {
        registerAdaptor();
    }
    ~Object() { unregisterAdaptor(); }

private:
    // The bus policy keeps non-root callers away from the methods; this
    // holds when the policy file is missing too.
    void require_root(const char* method) {
        const auto* msg = getObject().getCurrentlyProcessedMessage();
        uid_t euid = 0;
        try {
            euid = msg ? msg->getCredsEuid() : 0;
        } catch (const sdbus::Error&) {
            euid = static_cast<uid_t>(-1);
        }
        if (euid != 0)
            throw sdbus::Error("org.freedesktop.DBus.Error.AccessDenied",
                               std::string("io.crisd.Daemon1.") + method + " is for root only");
    }

    std::tuple<std::vector<sdbus::Struct<std::string, bool, std::string, std::string>>,
               std::vector<std::string>, std::map<std::string, std::string>>
    Status() override {
        require_root("Status");
        return guarded("Status", [&] {
            const auto st = impl_.provider.status();
            std::vector<sdbus::Struct<std::string, bool, std::string, std::string>> conds;
            for (const auto& c : st.conditions) conds.emplace_back(c.type, c.status, c.reason, c.message);
            return std::make_tuple(std::move(conds), st.runtime_handlers, st.info);
        });
    }

    std::vector<sdbus::Struct<std::string, std::string, std::string, std::string, std::string>>
    ListContainers() override {
        require_root("ListContainers");
        return guarded("ListContainers", [&] {
            std::vector<sdbus::Struct<std::string, std::string, std::string, std::string, std::string>> out;
            for (const auto& c : impl_.provider.containers())
                out.emplace_back(c.id, c.name, c.pod, c.state, c.scope);
            return out;
        });
    }

    std::string Version() override { return impl_.opt.version; }
    bool RuntimeReady() override { return impl_.snapshot().runtime_ready; }
    bool NetworkReady() override { return impl_.snapshot().network_ready; }
    uint32_t Pods() override { return impl_.snapshot().counts.pods; }
    uint32_t Containers() override { return impl_.snapshot().counts.containers; }
    uint32_t RunningContainers() override { return impl_.snapshot().counts.running_containers; }
    uint32_t Images() override { return impl_.snapshot().counts.images; }
    std::string StreamAddress() override { return impl_.snapshot().stream_address; }
    uint64_t StartedAt() override {
        return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                         impl_.opt.started_at.time_since_epoch())
                                         .count());
    }

    Impl& impl_;
};

Service::Impl::Impl(const Provider& p, Options o) : provider(p), opt(std::move(o)) {
    try {
        snap = read();
    } catch (const std::exception& e) {
        spdlog::warn("io.crisd.Daemon1: reading the status: {}", e.what());
    }
    bus::ConnectionOptions bo;
    bo.address = opt.bus_address;
    bo.what = kBusName;
    bo.keep_connected = true;
    bo.attach = [this](sdbus::IConnection& conn) -> std::unique_ptr<bus::Attachment> {
        auto a = std::make_unique<Attached>();
        a->object = std::make_unique<Object>(conn, *this);
        conn.requestName(kBusName);  // after the object exists: callers find it at once
        published = true;
        spdlog::info("published {} at {} on the {} bus", kBusName, kObjectPath,
                     opt.bus_address.empty() ? "system" : "given");
        return a;
    };
    bo.on_lost = [this] { published = false; };
    bus = std::make_unique<bus::Connection>(std::move(bo));
    poller = std::thread([this] { poll_loop(); });
}

Service::Impl::~Impl() {
    {
        std::lock_guard lock(mu);
        stopping = true;
    }
    cv.notify_all();
    poller.join();
    if (auto link = bus->current()) {
        try {
            link->conn().releaseName(kBusName);
        } catch (const sdbus::Error& e) {
            spdlog::debug("releasing {}: {}", kBusName, e.what());
        }
    }
    bus.reset();
}

template <typename Fn>
void Service::Impl::with_object(Fn&& fn) {
    auto link = bus->current();
    if (!link || !link->attachment()) return;  // not on the bus: nobody to tell
    try {
        fn(*static_cast<Attached*>(link->attachment())->object);
    } catch (const sdbus::Error& e) {
        spdlog::debug("io.crisd.Daemon1: {}", e.what());
    }
    bus->wake();
}

void Service::Impl::refresh() {
    Snapshot now;
    try {
        now = read();
    } catch (const std::exception& e) {
        spdlog::warn("io.crisd.Daemon1: reading the status: {}", e.what());
        return;
    }
    std::vector<std::string> changed;
    {
        std::lock_guard lock(mu);
        if (now.runtime_ready != snap.runtime_ready) changed.emplace_back("RuntimeReady");
        if (now.network_ready != snap.network_ready) changed.emplace_back("NetworkReady");
        if (now.counts.pods != snap.counts.pods) changed.emplace_back("Pods");
        if (now.counts.containers != snap.counts.containers) changed.emplace_back("Containers");
        if (now.counts.running_containers != snap.counts.running_containers)
            changed.emplace_back("RunningContainers");
        if (now.counts.images != snap.counts.images) changed.emplace_back("Images");
        if (now.stream_address != snap.stream_address) changed.emplace_back("StreamAddress");
        snap = now;
    }
    if (changed.empty()) return;
    with_object([&](Object& o) { o.emitPropertiesChangedSignal(kInterface, changed); });
}

void Service::Impl::poll_loop() {
    std::unique_lock lock(mu);
    while (!stopping) {
        cv.wait_for(lock, opt.poll, [&] { return stopping; });
        if (stopping) break;
        lock.unlock();
        refresh();
        lock.lock();
    }
}

Service::Service(const Provider& provider, Options options)
    : impl_(std::make_unique<Impl>(provider, std::move(options))) {}

Service::~Service() = default;

void Service::refresh() { impl_->refresh(); }

void Service::container_started(const std::string& id) {
    impl_->with_object([&](Impl::Object& o) { o.emitContainerStarted(id); });
    impl_->refresh();
}

void Service::container_exited(const std::string& id, std::int32_t exit_code) {
    impl_->with_object([&](Impl::Object& o) { o.emitContainerExited(id, exit_code); });
    impl_->refresh();
}

bool Service::published() const { return impl_->published.load(); }

}  // namespace crisd::status
