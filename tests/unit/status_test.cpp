// io.crisd.Daemon1 (src/status) on a private dbus-daemon: properties,
// PropertiesChanged, methods, signals, and coming back after the bus daemon
// restarts. Also the real systemd::Manager on a bus without systemd.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <sdbus-c++/sdbus-c++.h>

#include "common/error.hpp"
#include "status/status.hpp"
#include "systemd/systemd.hpp"

using namespace crisd;
using namespace std::chrono_literals;

namespace {

// A dbus-daemon of our own on a unix socket in a temp dir.
class PrivateBus {
public:
    PrivateBus() {
        char tmpl[] = "/tmp/crisd-status-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        std::ofstream(dir_ + "/bus.conf") << R"(<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=)" << dir_ << R"(/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
)";
        start();
    }
    ~PrivateBus() {
        stop();
        std::filesystem::remove_all(dir_);
    }

    std::string address() const { return "unix:path=" + dir_ + "/bus"; }
    bool available() const { return pid_ > 0; }

    void start() {
        int out[2];
        if (::pipe2(out, O_CLOEXEC) != 0) return;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::execlp("dbus-daemon", "dbus-daemon", ("--config-file=" + dir_ + "/bus.conf").c_str(),
                     "--nofork", "--print-address=1", nullptr);
            ::_exit(127);
        }
        ::close(out[1]);
        char buf[512];
        const ssize_t n = ::read(out[0], buf, sizeof buf);  // the address: it listens now
        ::close(out[0]);
        if (n <= 0) {
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
        std::filesystem::remove(dir_ + "/bus");
    }

private:
    std::string dir_;
    pid_t pid_ = -1;
};

class FakeProvider final : public status::Provider {
public:
    status::RuntimeStatus status() const override {
        std::lock_guard lock(mu);
        status::RuntimeStatus st;
        st.conditions = {{"RuntimeReady", runtime_ready, "", ""},
                         {"NetworkReady", false, "NetworkPluginNotReady", "no CNI config"}};
        st.runtime_handlers = {"runc", "crun"};
        st.info = {{"config", "{\"defaultRuntime\":\"runc\"}"}};
        return st;
    }
    status::Counts counts() const override {
        std::lock_guard lock(mu);
        return counts_;
    }
    std::vector<status::ContainerRow> containers() const override {
        return {{std::string(64, 'a'), "web", std::string(64, 'b'), "CONTAINER_RUNNING",
                 "crisd-" + std::string(64, 'a') + ".scope"}};
    }
    std::string stream_address() const override { return "127.0.0.1:10010"; }

    void set(status::Counts c) {
        std::lock_guard lock(mu);
        counts_ = c;
    }

    mutable std::mutex mu;
    bool runtime_ready = true;
    status::Counts counts_{1, 2, 1, 3};
};

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

class StatusObject : public ::testing::Test {
protected:
    void SetUp() override {
        if (!bus_.available()) GTEST_SKIP() << "dbus-daemon is not installed";
        status::Options opt;
        opt.version = "9.9.9";
        opt.started_at = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456));
        opt.poll = 3600s;  // only explicit refresh() in these tests
        opt.bus_address = bus_.address();
        service_ = std::make_unique<status::Service>(provider_, opt);
        ASSERT_TRUE(eventually([&] { return service_->published(); }));
        client_ = sdbus::createSessionBusConnectionWithAddress(bus_.address());
        proxy_ = sdbus::createProxy(*client_, status::kBusName, status::kObjectPath);
        client_->enterEventLoopAsync();
    }
    void TearDown() override {
        proxy_.reset();
        if (client_) client_->leaveEventLoop();
        client_.reset();
        service_.reset();
    }

    sdbus::Variant get(const std::string& prop) {
        return proxy_->getProperty(prop).onInterface(status::kInterface);
    }

    PrivateBus bus_;
    FakeProvider provider_;
    std::unique_ptr<status::Service> service_;
    std::unique_ptr<sdbus::IConnection> client_;
    std::unique_ptr<sdbus::IProxy> proxy_;
};

}  // namespace

TEST_F(StatusObject, PropertiesComeFromTheProvider) {
    EXPECT_EQ(get("Version").get<std::string>(), "9.9.9");
    EXPECT_TRUE(get("RuntimeReady").get<bool>());
    EXPECT_FALSE(get("NetworkReady").get<bool>());
    EXPECT_EQ(get("Pods").get<uint32_t>(), 1u);
    EXPECT_EQ(get("Containers").get<uint32_t>(), 2u);
    EXPECT_EQ(get("RunningContainers").get<uint32_t>(), 1u);
    EXPECT_EQ(get("Images").get<uint32_t>(), 3u);
    EXPECT_EQ(get("StreamAddress").get<std::string>(), "127.0.0.1:10010");
    EXPECT_EQ(get("StartedAt").get<uint64_t>(), 1700000000123456u);

    std::map<std::string, sdbus::Variant> all;
    proxy_->callMethod("GetAll").onInterface("org.freedesktop.DBus.Properties")
        .withArguments(std::string(status::kInterface)).storeResultsTo(all);
    EXPECT_EQ(all.size(), 9u);
}

TEST_F(StatusObject, PropertiesChangedNamesWhatChanged) {
    std::mutex mu;
    std::vector<std::string> changed;
    std::atomic<int> signals{0};
    proxy_->uponSignal("PropertiesChanged").onInterface("org.freedesktop.DBus.Properties")
        .call([&](const std::string& iface, const std::map<std::string, sdbus::Variant>& values,
                  const std::vector<std::string>& invalidated) {
            std::lock_guard lock(mu);
            EXPECT_EQ(iface, status::kInterface);
            for (const auto& [k, v] : values) changed.push_back(k);
            changed.insert(changed.end(), invalidated.begin(), invalidated.end());
            ++signals;
        });
    proxy_->finishRegistration();

    service_->refresh();  // nothing changed: no signal
    provider_.set({1, 5, 4, 3});
    service_->refresh();
    ASSERT_TRUE(eventually([&] { return signals.load() >= 1; }));
    std::this_thread::sleep_for(100ms);
    std::lock_guard lock(mu);
    EXPECT_EQ(signals.load(), 1);
    std::sort(changed.begin(), changed.end());
    EXPECT_EQ(changed, (std::vector<std::string>{"Containers", "RunningContainers"}));
    EXPECT_EQ(get("Containers").get<uint32_t>(), 5u);
}

TEST_F(StatusObject, StatusMethodIsTheVerboseCriStatus) {
    std::vector<sdbus::Struct<std::string, bool, std::string, std::string>> conds;
    std::vector<std::string> handlers;
    std::map<std::string, std::string> info;
    proxy_->callMethod("Status").onInterface(status::kInterface).storeResultsTo(conds, handlers, info);
    ASSERT_EQ(conds.size(), 2u);
    EXPECT_EQ(std::get<0>(conds[0]), "RuntimeReady");
    EXPECT_TRUE(std::get<1>(conds[0]));
    EXPECT_EQ(std::get<0>(conds[1]), "NetworkReady");
    EXPECT_FALSE(std::get<1>(conds[1]));
    EXPECT_EQ(std::get<2>(conds[1]), "NetworkPluginNotReady");
    EXPECT_EQ(handlers, (std::vector<std::string>{"runc", "crun"}));
    EXPECT_EQ(info.at("config"), "{\"defaultRuntime\":\"runc\"}");
}

TEST_F(StatusObject, ListContainers) {
    std::vector<sdbus::Struct<std::string, std::string, std::string, std::string, std::string>> rows;
    proxy_->callMethod("ListContainers").onInterface(status::kInterface).storeResultsTo(rows);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(std::get<1>(rows[0]), "web");
    EXPECT_EQ(std::get<3>(rows[0]), "CONTAINER_RUNNING");
    EXPECT_EQ(std::get<4>(rows[0]), "crisd-" + std::string(64, 'a') + ".scope");
}

TEST_F(StatusObject, ContainerSignals) {
    std::mutex mu;
    std::string started, exited;
    int32_t code = -1;
    proxy_->uponSignal("ContainerStarted").onInterface(status::kInterface).call([&](const std::string& id) {
        std::lock_guard lock(mu);
        started = id;
    });
    proxy_->uponSignal("ContainerExited").onInterface(status::kInterface).call([&](const std::string& id, int32_t c) {
        std::lock_guard lock(mu);
        exited = id;
        code = c;
    });
    proxy_->finishRegistration();
    service_->container_started("abc");
    service_->container_exited("def", 137);
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lock(mu);
        return !started.empty() && !exited.empty();
    }));
    std::lock_guard lock(mu);
    EXPECT_EQ(started, "abc");
    EXPECT_EQ(exited, "def");
    EXPECT_EQ(code, 137);
}

TEST_F(StatusObject, ComesBackAfterTheBusDaemonRestarts) {
    proxy_.reset();
    client_->leaveEventLoop();
    client_.reset();
    bus_.stop();
    ASSERT_TRUE(eventually([&] { return !service_->published(); }));
    bus_.start();
    ASSERT_TRUE(bus_.available());
    ASSERT_TRUE(eventually([&] { return service_->published(); }, 10s));
    client_ = sdbus::createSessionBusConnectionWithAddress(bus_.address());
    proxy_ = sdbus::createProxy(*client_, status::kBusName, status::kObjectPath);
    client_->enterEventLoopAsync();
    EXPECT_EQ(get("Pods").get<uint32_t>(), 1u);
}

TEST(StatusNoBus, MissingBusIsNotFatal) {
    FakeProvider provider;
    status::Options opt;
    opt.bus_address = "unix:path=/nonexistent/crisd-test-bus";
    status::Service service(provider, opt);
    EXPECT_FALSE(service.published());
    service.refresh();  // nobody to tell; no error
    service.container_started("x");
}

TEST(SystemdManagerNoSystemd, BusWithoutSystemdIsUnavailable) {
    PrivateBus bus;
    if (!bus.available()) GTEST_SKIP() << "dbus-daemon is not installed";
    systemd::Options opt;
    opt.bus_address = bus.address();
    opt.call_timeout = 2s;
    auto m = systemd::make_manager(opt);
    try {
        m->unit_state("crisd.slice");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::Unavailable) << e.what();
        EXPECT_NE(std::string(e.what()).find("org.freedesktop.DBus.Error.ServiceUnknown"), std::string::npos)
            << e.what();
    }
    // Bad input is refused before the bus is asked.
    try {
        m->stop_unit("no unit");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::InvalidArgument) << e.what();
    }
}

TEST(SystemdManagerNoSystemd, NoBusIsUnavailable) {
    systemd::Options opt;
    opt.bus_address = "unix:path=/nonexistent/crisd-test-bus";
    auto m = systemd::make_manager(opt);
    try {
        m->reset_failed("crisd.slice");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::Unavailable) << e.what();
    }
}
