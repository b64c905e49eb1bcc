// The real systemd::Manager against a scripted org.freedesktop.systemd1 on a
// private dbus-daemon: the D-Bus types of the properties, JobRemoved arriving
// before the method reply, reset-failed + one retry, the job deadline, and
// errors mapped by name.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <sdbus-c++/sdbus-c++.h>

#include "common/error.hpp"
#include "systemd/systemd.hpp"

using namespace crisd;
using namespace std::chrono_literals;

namespace {

class PrivateBus {
public:
    PrivateBus() {
        char tmpl[] = "/tmp/crisd-systemd-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        std::ofstream(dir_ + "/bus.conf") << "<busconfig><type>custom</type><listen>unix:path=" << dir_
                                          << "/bus</listen><auth>EXTERNAL</auth><policy context=\"default\">"
                                             "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>"
                                             "<allow own=\"*\"/></policy></busconfig>";
        int out[2];
        if (::pipe2(out, O_CLOEXEC) != 0) return;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::execlp("dbus-daemon", "dbus-daemon", ("--config-file=" + dir_ + "/bus.conf").c_str(), "--nofork",
                     "--print-address=1", nullptr);
            ::_exit(127);
        }
        ::close(out[1]);
        char buf[512];
        if (::read(out[0], buf, sizeof buf) <= 0) {
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
        ::close(out[0]);
    }
    ~PrivateBus() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
        std::filesystem::remove_all(dir_);
    }
    std::string address() const { return "unix:path=" + dir_ + "/bus"; }
    bool available() const { return pid_ > 0; }

private:
    std::string dir_;
    pid_t pid_ = -1;
};

using Props = std::vector<sdbus::Struct<std::string, sdbus::Variant>>;
using Aux = std::vector<sdbus::Struct<std::string, Props>>;

// A scripted systemd: each StartTransientUnit/StopUnit takes the next outcome
// ("done", "failed", "none" = never finishes, or a D-Bus error name to throw);
// "done" when the script is empty.
class MockSystemd {
public:
    explicit MockSystemd(const std::string& address) {
        conn_ = sdbus::createSessionBusConnectionWithAddress(address);
        conn_->requestName("org.freedesktop.systemd1");
        obj_ = sdbus::createObject(*conn_, "/org/freedesktop/systemd1");
        const char* I = "org.freedesktop.systemd1.Manager";
        obj_->registerMethod("StartTransientUnit").onInterface(I)
            .implementedAs([this](const std::string& name, const std::string& mode, const Props& props, const Aux&) {
                std::lock_guard lock(mu);
                calls.push_back("start " + name + " " + mode);
                if (name.find(".scope") != std::string::npos) {
                    scope_props.clear();
                    for (const auto& p : props)
                        scope_props[std::get<0>(p)] = std::get<1>(p).peekValueType();
                }
                return job(name);
            });
        obj_->registerMethod("StopUnit").onInterface(I)
            .implementedAs([this](const std::string& name, const std::string& mode) {
                std::lock_guard lock(mu);
                calls.push_back("stop " + name + " " + mode);
                return job(name);
            });
        obj_->registerMethod("ResetFailedUnit").onInterface(I).implementedAs([this](const std::string& name) {
            std::lock_guard lock(mu);
            calls.push_back("reset-failed " + name);
        });
        obj_->registerMethod("Subscribe").onInterface(I).implementedAs([] {});
        obj_->registerMethod("GetUnit").onInterface(I).implementedAs([](const std::string& name) -> sdbus::ObjectPath {
            throw sdbus::Error("org.freedesktop.systemd1.NoSuchUnit", "Unit " + name + " not loaded.");
        });
        obj_->registerSignal("JobRemoved").onInterface(I)
            .withParameters<uint32_t, sdbus::ObjectPath, std::string, std::string>();
        obj_->finishRegistration();
        conn_->enterEventLoopAsync();
    }
    ~MockSystemd() { conn_->leaveEventLoop(); }

    void script(std::deque<std::string> outcomes) {
        std::lock_guard lock(mu);
        outcomes_ = std::move(outcomes);
    }
    std::vector<std::string> take_calls() {
        std::lock_guard lock(mu);
        return std::exchange(calls, {});
    }

    std::mutex mu;
    std::vector<std::string> calls;
    std::map<std::string, std::string> scope_props;  // name -> D-Bus type

private:
    // Called with mu held, on the mock's bus thread.
    sdbus::ObjectPath job(const std::string& unit) {
        std::string outcome = "done";
        if (!outcomes_.empty()) {
            outcome = outcomes_.front();
            outcomes_.pop_front();
        }
        if (outcome.find('.') != std::string::npos) throw sdbus::Error(outcome, "scripted error for " + unit);
        const uint32_t id = ++jobs_;
        const sdbus::ObjectPath path("/org/freedesktop/systemd1/job/" + std::to_string(id));
        // Emitted before the method returns: the client must already listen.
        if (outcome != "none")
            obj_->emitSignal("JobRemoved").onInterface("org.freedesktop.systemd1.Manager")
                .withArguments(id, path, unit, outcome);
        return path;
    }

    std::unique_ptr<sdbus::IConnection> conn_;
    std::unique_ptr<sdbus::IObject> obj_;
    std::deque<std::string> outcomes_;
    uint32_t jobs_ = 0;
};

class ManagerOnMock : public ::testing::Test {
protected:
    void SetUp() override {
        if (!bus_.available()) GTEST_SKIP() << "dbus-daemon is not installed";
        mock_ = std::make_unique<MockSystemd>(bus_.address());
        systemd::Options opt;
        opt.bus_address = bus_.address();
        opt.job_timeout = 500ms;
        m_ = systemd::make_manager(opt);
    }

    systemd::ScopeSpec spec() {
        systemd::ScopeSpec s;
        s.name = "crisd-a.scope";
        s.slice = "pod-x.slice";
        s.pids = {::getpid()};
        return s;
    }

    Code code_of(const std::function<void()>& fn) {
        try {
            fn();
        } catch (const Error& e) {
            last_ = e.what();
            return e.code();
        }
        return Code::Ok;
    }

    PrivateBus bus_;
    std::unique_ptr<MockSystemd> mock_;
    std::unique_ptr<systemd::Manager> m_;
    std::string last_;
};

}  // namespace

TEST_F(ManagerOnMock, StartsScopeWithSystemdsPropertyTypes) {
    auto s = spec();
    s.kill_signal = SIGUSR2;
    s.resources.cpu_shares = 512;
    s.resources.cpu_quota_us = 50000;
    s.resources.cpu_period_us = 100000;
    s.resources.memory_max = 1 << 30;
    s.resources.tasks_max = 10;
    // (No cpuset here: on a cgroup v1 host that would write /sys/fs/cgroup/cpuset.)
    m_->start_scope(s);
    EXPECT_EQ(mock_->take_calls(), (std::vector<std::string>{"start pod.slice fail", "start pod-x.slice fail",
                                                             "start crisd-a.scope fail"}));
    std::lock_guard lock(mock_->mu);
    EXPECT_EQ(mock_->scope_props, (std::map<std::string, std::string>{
                                      {"Description", "s"},
                                      {"Slice", "s"},
                                      {"PIDs", "au"},
                                      {"Delegate", "b"},
                                      {"CollectMode", "s"},
                                      {"KillSignal", "i"},
                                      {"CPUShares", "t"},
                                      {"CPUQuotaPerSecUSec", "t"},
                                      {"CPUQuotaPeriodUSec", "t"},
                                      {"MemoryMax", "t"},
                                      {"TasksMax", "t"},
                                  }));
}

TEST_F(ManagerOnMock, SlicesAreCreatedOnceExistingOnesReused) {
    mock_->script({"org.freedesktop.systemd1.UnitExists", "done"});  // pod.slice exists already
    m_->ensure_slice("pod-x.slice");
    m_->ensure_slice("pod-x.slice");
    m_->ensure_slice("pod.slice");
    EXPECT_EQ(mock_->take_calls(), (std::vector<std::string>{"start pod.slice fail", "start pod-x.slice fail"}));
}

TEST_F(ManagerOnMock, FailedStartIsResetAndRetriedOnce) {
    m_->ensure_slice("pod-x.slice");
    mock_->take_calls();
    mock_->script({"failed", "done"});
    m_->start_scope(spec());
    EXPECT_EQ(mock_->take_calls(), (std::vector<std::string>{"start crisd-a.scope fail", "reset-failed crisd-a.scope",
                                                             "start crisd-a.scope fail"}));

    mock_->script({"failed", "failed"});
    EXPECT_EQ(code_of([&] { m_->start_scope(spec()); }), Code::Internal);
    EXPECT_NE(last_.find("result \"failed\""), std::string::npos) << last_;
    EXPECT_EQ(mock_->take_calls().size(), 3u);

    mock_->script({"dependency", "dependency"});
    EXPECT_EQ(code_of([&] { m_->start_scope(spec()); }), Code::FailedPrecondition);
}

TEST_F(ManagerOnMock, JobThatNeverEndsHitsTheDeadline) {
    m_->ensure_slice("pod-x.slice");
    mock_->script({"none"});
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(code_of([&] { m_->start_scope(spec()); }), Code::DeadlineExceeded) << last_;
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 450ms);
    EXPECT_LT(took, 3s);
    mock_->script({"none"});
    EXPECT_EQ(code_of([&] { m_->stop_unit("crisd-a.scope"); }), Code::DeadlineExceeded);
}

TEST_F(ManagerOnMock, ErrorsByName) {
    m_->ensure_slice("pod-x.slice");
    mock_->script({"org.freedesktop.systemd1.UnitExists"});
    EXPECT_EQ(code_of([&] { m_->start_scope(spec()); }), Code::AlreadyExists);
    EXPECT_NE(last_.find("StartTransientUnit crisd-a.scope"), std::string::npos) << last_;
    EXPECT_NE(last_.find("(org.freedesktop.systemd1.UnitExists)"), std::string::npos) << last_;
    mock_->script({"org.freedesktop.DBus.Error.AccessDenied"});
    EXPECT_EQ(code_of([&] { m_->start_scope(spec()); }), Code::PermissionDenied);
    mock_->script({"org.freedesktop.DBus.Error.InvalidArgs"});
    EXPECT_EQ(code_of([&] { m_->start_scope(spec()); }), Code::InvalidArgument);
    mock_->script({"org.freedesktop.systemd1.NoSuchUnit"});
    EXPECT_EQ(code_of([&] { m_->stop_unit("crisd-a.scope"); }), Code::Ok) << "stopping a missing unit is fine";
    mock_->script({"failed"});
    EXPECT_EQ(code_of([&] { m_->stop_unit("crisd-a.scope"); }), Code::Internal);
    // A method this mock lacks: UnknownMethod -> Unimplemented.
    EXPECT_EQ(code_of([&] { m_->kill_unit("crisd-a.scope", SIGTERM); }), Code::Unimplemented) << last_;
}
