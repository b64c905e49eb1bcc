// The real systemd::Manager: org.freedesktop.systemd1.Manager over sdbus-c++.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include <sdbus-c++/sdbus-c++.h>
#include <spdlog/spdlog.h>

#include "bus/bus.hpp"
#include "log/log.hpp"
#include "systemd/logic.hpp"
#include "systemd/systemd.hpp"

namespace crisd::systemd {
namespace {

constexpr const char* kService = "org.freedesktop.systemd1";
constexpr const char* kPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kProperties = "org.freedesktop.DBus.Properties";
constexpr const char* kCgroupRoot = "/sys/fs/cgroup";

using Props = std::vector<sdbus::Struct<std::string, sdbus::Variant>>;
using AuxUnits = std::vector<sdbus::Struct<std::string, Props>>;

Props to_dbus(const std::vector<Property>& props) {
    Props out;
    for (const auto& p : props)
        out.emplace_back(p.name, std::visit([](const auto& v) { return sdbus::Variant(v); }, p.value));
    return out;
}

CgroupVersion detect_cgroup_version() {
    struct statfs fs {};
    if (::statfs(kCgroupRoot, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return CgroupVersion::V2;
    return CgroupVersion::V1;
}

// Journal fields for lines about one unit; CONTAINER_ID only when the caller
// has not set it already.
class UnitFields {
public:
    explicit UnitFields(const std::string& unit) {
        bool have_container = false;
        for (const auto& [k, v] : log::current_fields())
            if (k == "CONTAINER_ID") have_container = true;
        for (const auto& [k, v] : unit_log_fields(unit)) {
            if (k == "CONTAINER_ID" || k == "CONTAINER_ID_FULL") {
                if (have_container) continue;
            }
            guards_.emplace_back(std::make_unique<log::Fields>(
                std::initializer_list<std::pair<std::string, std::string>>{{k, v}}));
        }
    }
    ~UnitFields() {
        while (!guards_.empty()) guards_.pop_back();  // innermost first
    }

private:
    std::vector<std::unique_ptr<log::Fields>> guards_;
};

// ---- cgroup v1 cpuset -------------------------------------------------------
// systemd manages cpuset only on the unified hierarchy: on a legacy or hybrid
// host AllowedCPUs= is recorded but not applied. There crisd writes the v1
// cpuset cgroup at the unit's own path itself, as runc's systemd driver does.

std::string read_text(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("reading " + path);
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) throw_errno("reading " + path);
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

void write_text(const std::string& path, const std::string& value) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) throw_errno("opening " + path);
    if (::write(fd.get(), value.data(), value.size()) < 0)
        throw_errno("writing \"" + value + "\" to " + path);
}

class CpusetV1 {
public:
    CpusetV1() : root_(std::string(kCgroupRoot) + "/cpuset") {}

    bool available() const { return ::access((root_ + "/cpuset.cpus").c_str(), W_OK) == 0; }

    // Creates the cpuset cgroup at `cg` (and above), writes the values and,
    // when it is new, moves the unit's processes (from the name=systemd
    // hierarchy, else `pids`) into it.
    void apply(const std::string& unit, const std::string& cg, const std::optional<std::string>& cpus,
               const std::optional<std::string>& mems, const std::vector<pid_t>& pids) {
        bool created = false;
        std::string cur = root_;
        for (const auto& part : std::filesystem::path(cg)) {
            if (part == "/" || part.empty()) continue;
            const std::string next = cur + "/" + part.string();
            if (::mkdir(next.c_str(), 0755) == 0) {
                created = true;
                write_text(next + "/cpuset.cpus", read_text(cur + "/cpuset.cpus"));
                write_text(next + "/cpuset.mems", read_text(cur + "/cpuset.mems"));
            } else if (errno != EEXIST) {
                throw_errno("creating cpuset cgroup " + next);
            }
            cur = next;
        }
        const std::string parent = std::filesystem::path(cur).parent_path().string();
        const auto value = [&](const std::optional<std::string>& v, const char* file) {
            return v->empty() ? read_text(parent + "/" + file) : format_cpuset(parse_cpuset(*v));
        };
        if (cpus) write_text(cur + "/cpuset.cpus", value(cpus, "cpuset.cpus"));
        if (mems) write_text(cur + "/cpuset.mems", value(mems, "cpuset.mems"));
        {
            std::lock_guard lock(mu_);
            dirs_[unit] = cur;
        }
        if (!created) return;
        std::vector<std::string> procs;
        try {
            const std::string list = read_text(std::string(kCgroupRoot) + "/systemd" + cg + "/cgroup.procs");
            size_t start = 0;
            while (start < list.size()) {
                size_t nl = list.find('\n', start);
                if (nl == std::string::npos) nl = list.size();
                if (nl > start) procs.push_back(list.substr(start, nl - start));
                start = nl + 1;
            }
        } catch (const Error&) {
            for (pid_t p : pids) procs.push_back(std::to_string(p));
        }
        for (const auto& p : procs) {
            try {
                write_text(cur + "/cgroup.procs", p);
            } catch (const Error& e) {
                if (e.sys_errno() != ESRCH) throw;
            }
        }
    }

    std::optional<std::string> known_dir(const std::string& unit) {
        std::lock_guard lock(mu_);
        auto it = dirs_.find(unit);
        if (it == dirs_.end()) return std::nullopt;
        return it->second;
    }

    std::string dir_for(const std::string& cg) const { return root_ + cg; }

    // Removes the unit's cpuset cgroup once its processes are gone.
    void remove(const std::string& unit, const std::string& dir) {
        {
            std::lock_guard lock(mu_);
            dirs_.erase(unit);
        }
        if (::rmdir(dir.c_str()) != 0 && errno != ENOENT)
            spdlog::warn("removing cpuset cgroup {}: {}", dir, std::strerror(errno));
    }

private:
    std::string root_;
    std::mutex mu_;
    std::map<std::string, std::string> dirs_;  // unit -> cpuset cgroup crisd made
};

// ---- jobs ------------------------------------------------------------------

// JobRemoved results, kept while somebody waits. A waiter takes a ticket
// before it calls the method that queues the job, so a job that ends before
// the reply is read is not missed.
class Jobs {
public:
    enum class Outcome { Done, Timeout, Lost };

    class Ticket {
    public:
        explicit Ticket(Jobs& j) : jobs_(j) {
            std::lock_guard lock(jobs_.mu_);
            ++jobs_.waiters_;
            losses_ = jobs_.losses_;
        }
        ~Ticket() {
            std::lock_guard lock(jobs_.mu_);
            if (!path_.empty()) jobs_.results_.erase(path_);
            if (--jobs_.waiters_ == 0) jobs_.results_.clear();
        }
        Ticket(const Ticket&) = delete;
        Ticket& operator=(const Ticket&) = delete;

        // Waits for JobRemoved of `path` until `deadline`.
        Outcome wait(const std::string& path, std::chrono::steady_clock::time_point deadline,
                     std::string& result) {
            std::unique_lock lock(jobs_.mu_);
            path_ = path;
            const bool done = jobs_.cv_.wait_until(lock, deadline, [&] {
                return jobs_.results_.count(path) > 0 || jobs_.losses_ != losses_;
            });
            if (auto it = jobs_.results_.find(path); it != jobs_.results_.end()) {
                result = it->second;
                return Outcome::Done;
            }
            return done ? Outcome::Lost : Outcome::Timeout;
        }

    private:
        Jobs& jobs_;
        std::uint64_t losses_ = 0;
        std::string path_;
    };

    void removed(const std::string& path, const std::string& result) {
        {
            std::lock_guard lock(mu_);
            if (waiters_ == 0) return;
            results_[path] = result;
        }
        cv_.notify_all();
    }

    void lost() {
        {
            std::lock_guard lock(mu_);
            ++losses_;
        }
        cv_.notify_all();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, std::string> results_;
    int waiters_ = 0;
    std::uint64_t losses_ = 0;
};

struct SystemdAttachment : bus::Attachment {
    sdbus::IConnection* conn = nullptr;
    std::unique_ptr<sdbus::IProxy> manager;
    sdbus::Slot job_removed;
};

// ---- the manager -----------------------------------------------------------

class RealManager final : public Manager {
public:
    explicit RealManager(Options opt)
        : opt_(std::move(opt)),
          version_(detect_cgroup_version()),
          bus_(bus::ConnectionOptions{
              opt_.bus_address, "systemd client", false, std::chrono::milliseconds(30000),
              [this](sdbus::IConnection& c) { return attach(c); }, [this] { jobs_.lost(); }}) {}

    void start_scope(const ScopeSpec& spec) override {
        const auto props = scope_properties(spec, opt_.default_slice, version_);
        const std::string slice = spec.slice.empty() ? opt_.default_slice : spec.slice;
        with_context("starting " + spec.name, [&] { ensure_slice(slice); });  // its lines are about the slice
        UnitFields fields(spec.name);
        const Props dprops = to_dbus(props);

        std::string result;
        for (int attempt = 0; attempt < 2; ++attempt) {
            Jobs::Ticket ticket(jobs_);
            const auto job = call("StartTransientUnit " + spec.name, [&](SystemdAttachment& a) {
                auto m = a.manager->createMethodCall(kManager, "StartTransientUnit");
                m << spec.name << std::string("fail") << dprops << AuxUnits{};
                sdbus::ObjectPath path;
                auto reply = a.manager->callMethod(m, call_timeout());
                reply >> path;
                return std::string(path);
            });
            result = wait_job(ticket, job, spec.name, true);
            if (result == "done") break;
            if (attempt == 0) {
                spdlog::warn("start job of {} finished with result \"{}\"; resetting it and retrying once",
                             spec.name, result);
                reset_failed(spec.name);
            }
        }
        if (result != "done")
            throw Error(code_for_job_result(result),
                        "starting " + spec.name + ": job finished with result \"" + result +
                            "\" (journalctl -u " + spec.name + ")");

        if (version_ == CgroupVersion::V1 && (spec.resources.cpuset_cpus || spec.resources.cpuset_mems))
            apply_cpuset_v1(spec.name, spec.resources, spec.pids);
        spdlog::debug("started {} in {}", spec.name, slice);
    }

    bool ensure_slice(const std::string& slice) override {
        bool created = false;
        for (const auto& s : expand_slice(slice)) {
            created = false;
            {
                std::lock_guard lock(mu_);
                if (slices_.count(s)) continue;
            }
            created = create_slice(s);
            std::lock_guard lock(mu_);
            slices_.insert(s);
        }
        return created;  // of the last one, `slice` itself
    }

    bool stop_slice_if_empty(const std::string& slice) override {
        std::string cg;
        try {
            cg = control_group(slice);
        } catch (const Error& e) {
            if (e.code() == Code::NotFound) return true;  // not loaded: gone already
            throw;
        }
        if (!cg.empty()) {
            // Its units are the cgroup's subdirectories in systemd's own hierarchy.
            const std::string dir =
                std::string(kCgroupRoot) + (version_ == CgroupVersion::V2 ? "" : "/systemd") + cg;
            std::error_code ec;
            for (const auto& e : std::filesystem::directory_iterator(dir, ec))
                if (e.is_directory(ec)) {
                    spdlog::info("slice {} is left running: {} is in it", slice, e.path().filename().string());
                    return false;
                }
        }
        stop_unit(slice);
        reset_failed(slice);
        return true;
    }

    void stop_unit(const std::string& unit) override {
        UnitFields fields(unit);
        check_unit(unit);
        std::optional<std::string> cpuset_dir;
        if (version_ == CgroupVersion::V1) {
            cpuset_dir = cpuset_.known_dir(unit);
            if (!cpuset_dir && cpuset_.available()) {
                // Only for the cleanup of a cpuset cgroup: never a reason to fail the stop.
                try {
                    const auto cg = control_group(unit);
                    if (!cg.empty()) cpuset_dir = cpuset_.dir_for(cg);
                } catch (const Error& e) {
                    if (e.code() != Code::NotFound) spdlog::debug("stopping {}: {}", unit, e.what());
                }
            }
        }
        Jobs::Ticket ticket(jobs_);
        std::string job;
        try {
            job = call("StopUnit " + unit, [&](SystemdAttachment& a) {
                auto m = a.manager->createMethodCall(kManager, "StopUnit");
                m << unit << std::string("replace");
                sdbus::ObjectPath path;
                auto reply = a.manager->callMethod(m, call_timeout());
                reply >> path;
                return std::string(path);
            });
        } catch (const Error& e) {
            if (e.code() != Code::NotFound) throw;
        }
        if (!job.empty()) {
            const auto result = wait_job(ticket, job, unit, false);
            if (result != "done")
                throw Error(code_for_job_result(result),
                            "stopping " + unit + ": job finished with result \"" + result + "\"");
        }
        if (cpuset_dir) cpuset_.remove(unit, *cpuset_dir);
        {
            std::lock_guard lock(mu_);
            slices_.erase(unit);
        }
        spdlog::debug("stopped {}", unit);
    }

    void kill_unit(const std::string& unit, int signal) override {
        UnitFields fields(unit);
        check_unit(unit);
        if (signal <= 0 || signal > 64)
            throw Error(Code::InvalidArgument, "killing " + unit + ": invalid signal " + std::to_string(signal));
        call("KillUnit " + unit, [&](SystemdAttachment& a) {
            auto m = a.manager->createMethodCall(kManager, "KillUnit");
            m << unit << std::string("all") << static_cast<std::int32_t>(signal);
            a.manager->callMethod(m, call_timeout());
            return 0;
        });
        spdlog::debug("sent signal {} to {}", signal, unit);
    }

    void set_properties(const std::string& unit, const Resources& resources) override {
        UnitFields fields(unit);
        check_unit(unit);
        const Props dprops = to_dbus(
            with_context("updating " + unit, [&] { return resource_properties(resources, version_); }));
        if (!dprops.empty()) {
            call("SetUnitProperties " + unit, [&](SystemdAttachment& a) {
                auto m = a.manager->createMethodCall(kManager, "SetUnitProperties");
                m << unit << true << dprops;
                a.manager->callMethod(m, call_timeout());
                return 0;
            });
        }
        if (version_ == CgroupVersion::V1 && (resources.cpuset_cpus || resources.cpuset_mems))
            apply_cpuset_v1(unit, resources, {});
        spdlog::debug("updated the limits of {}", unit);
    }

    UnitState unit_state(const std::string& unit) override {
        check_unit(unit);
        return call("reading the state of " + unit, [&](SystemdAttachment& a) {
            const auto path = get_unit(a, unit);
            auto proxy = sdbus::createProxy(*a.conn, kService, path);
            auto m = proxy->createMethodCall(kProperties, "GetAll");
            m << std::string("org.freedesktop.systemd1.Unit");
            std::map<std::string, sdbus::Variant> all;
            auto reply = proxy->callMethod(m, call_timeout());
            reply >> all;
            const auto str = [&](const char* key) {
                auto it = all.find(key);
                return it == all.end() ? std::string() : it->second.get<std::string>();
            };
            return UnitState{str("LoadState"), str("ActiveState"), str("SubState")};
        });
    }

    std::string control_group(const std::string& unit) override {
        check_unit(unit);
        const auto iface = unit_type_interface(unit);
        return call("reading the cgroup of " + unit, [&](SystemdAttachment& a) {
            const auto path = get_unit(a, unit);
            auto proxy = sdbus::createProxy(*a.conn, kService, path);
            auto m = proxy->createMethodCall(kProperties, "Get");
            m << iface << std::string("ControlGroup");
            sdbus::Variant v;
            auto reply = proxy->callMethod(m, call_timeout());
            reply >> v;
            return v.get<std::string>();
        });
    }

    void reset_failed(const std::string& unit) override {
        check_unit(unit);
        try {
            call("ResetFailedUnit " + unit, [&](SystemdAttachment& a) {
                auto m = a.manager->createMethodCall(kManager, "ResetFailedUnit");
                m << unit;
                a.manager->callMethod(m, call_timeout());
                return 0;
            });
        } catch (const Error& e) {
            if (e.code() != Code::NotFound) throw;
        }
    }

private:
    std::unique_ptr<bus::Attachment> attach(sdbus::IConnection& conn) {
        auto a = std::make_unique<SystemdAttachment>();
        a->conn = &conn;
        a->manager = sdbus::createProxy(conn, kService, kPath);
        // Matched before any job is queued on this connection.
        a->job_removed = conn.addMatch(
            "type='signal',sender='org.freedesktop.systemd1',path='/org/freedesktop/systemd1',"
            "interface='org.freedesktop.systemd1.Manager',member='JobRemoved'",
            [this](sdbus::Message& msg) {
                try {
                    std::uint32_t id = 0;
                    sdbus::ObjectPath job;
                    std::string unit, result;
                    msg >> id >> job >> unit >> result;
                    jobs_.removed(job, result);
                } catch (const std::exception& e) {
                    spdlog::warn("systemd client: unreadable JobRemoved signal: {}", e.what());
                }
            });
        // The documented way to get the manager's signals (JobRemoved reaches
        // the job's own client anyway; after a reconnect we are not that client).
        try {
            auto m = a->manager->createMethodCall(kManager, "Subscribe");
            a->manager->callMethod(m, call_timeout());
        } catch (const sdbus::Error& e) {
            if (e.getName() != "org.freedesktop.systemd1.AlreadySubscribed")
                spdlog::warn("systemd client: Subscribe: {} ({})", e.getMessage(), e.getName());
        }
        return a;
    }

    std::uint64_t call_timeout() const {
        return static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(opt_.call_timeout).count());
    }

    static void check_unit(const std::string& unit) {
        if (!valid_unit_name(unit)) throw Error(Code::InvalidArgument, "invalid unit name \"" + unit + "\"");
    }

    static std::string get_unit(SystemdAttachment& a, const std::string& unit) {
        auto m = a.manager->createMethodCall(kManager, "GetUnit");
        m << unit;
        sdbus::ObjectPath path;
        auto reply = a.manager->callMethod(m, 0);
        reply >> path;
        return path;
    }

    // Runs fn on the live connection. A transport error (disconnected, no
    // reply, systemd off the bus during daemon-reexec) gets one retry on a
    // fresh connection; every D-Bus error leaves as a crisd::Error by its name.
    template <typename Fn>
    auto call(const std::string& what, Fn&& fn) -> decltype(fn(std::declval<SystemdAttachment&>())) {
        for (int attempt = 0;; ++attempt) {
            auto link = with_context(what, [&] { return bus_.get(); });
            auto& a = static_cast<SystemdAttachment&>(*link->attachment());
            try {
                // One call at a time, and the others asleep on a mutex: sdbus-c++ 1.x serializes
                // synchronous calls on a connection whose event loop it does not run itself
                // (crisd's bus thread runs it) by spinning on try_lock, a CPU per waiting thread.
                std::unique_lock serial(call_mu_);
                auto r = fn(a);
                serial.unlock();
                bus_.wake();
                return r;
            } catch (const sdbus::Error& e) {
                bus_.wake();
                if (attempt == 0 && is_transient_dbus_error(e.getName())) {
                    spdlog::info("{}: {} ({}); retrying", what, e.getMessage(), e.getName());
                    if (e.getName() != "org.freedesktop.DBus.Error.NoReply" &&
                        e.getName() != "org.freedesktop.DBus.Error.ServiceUnknown" &&
                        e.getName() != "org.freedesktop.DBus.Error.NameHasNoOwner")
                        bus_.drop(link);
                    continue;
                }
                throw dbus_error(what, e.getName(), e.getMessage());
            }
        }
    }

    // Waits for `job`; after a lost connection, looks at the job and the unit
    // on a new one. Returns the job result ("done", "failed", ...).
    std::string wait_job(Jobs::Ticket& ticket, const std::string& job, const std::string& unit, bool start) {
        const auto deadline = std::chrono::steady_clock::now() + opt_.job_timeout;
        for (;;) {
            std::string result;
            switch (ticket.wait(job, deadline, result)) {
            case Jobs::Outcome::Done: return result;
            case Jobs::Outcome::Timeout:
                throw Error(Code::DeadlineExceeded,
                            (start ? "starting " : "stopping ") + unit + ": job " + job +
                                " did not finish within " +
                                std::to_string(opt_.job_timeout.count()) + " ms");
            case Jobs::Outcome::Lost: break;
            }
            // The connection went away while we waited: the signal may be lost.
            Jobs::Ticket again(jobs_);
            const bool job_alive = call("checking job " + job, [&](SystemdAttachment& a) {
                auto proxy = sdbus::createProxy(*a.conn, kService, job);
                auto m = proxy->createMethodCall(kProperties, "Get");
                m << std::string("org.freedesktop.systemd1.Job") << std::string("State");
                try {
                    proxy->callMethod(m, call_timeout());
                    return true;
                } catch (const sdbus::Error& e) {
                    if (is_transient_dbus_error(e.getName())) throw;
                    return false;
                }
            });
            if (job_alive) return wait_job(again, job, unit, start);
            UnitState st;
            try {
                st = unit_state(unit);
            } catch (const Error& e) {
                if (e.code() != Code::NotFound) throw;
                st.active_state = "inactive";
            }
            if (start) return st.active_state == "active" ? "done" : "failed";
            return (st.active_state == "inactive" || st.active_state == "failed") ? "done" : "failed";
        }
    }

    // True when it was created, false when it was loaded already.
    bool create_slice(const std::string& slice) {
        UnitFields fields(slice);
        // Loaded already (a unit file, the kubelet's transient slice, or the
        // implicit parent of a running unit): not crisd's. StartTransientUnit
        // would take over a slice loaded without a file, and crisd would then
        // stop it, with whatever else runs in it, when its pod goes.
        try {
            call("looking up slice " + slice, [&](SystemdAttachment& a) { return get_unit(a, slice); });
            spdlog::debug("slice {} exists", slice);
            return false;
        } catch (const Error& e) {
            if (e.code() != Code::NotFound) throw;
        }
        const Props props = to_dbus({{"Description", "Slice " + slice + " (created by crisd)"}});
        Jobs::Ticket ticket(jobs_);
        std::string job;
        try {
            job = call("creating slice " + slice, [&](SystemdAttachment& a) {
                auto m = a.manager->createMethodCall(kManager, "StartTransientUnit");
                m << slice << std::string("fail") << props << AuxUnits{};
                sdbus::ObjectPath path;
                auto reply = a.manager->callMethod(m, call_timeout());
                reply >> path;
                return std::string(path);
            });
        } catch (const Error& e) {
            // Loaded already: from a unit file, by the kubelet, or as the
            // implicit parent of a running unit. systemd starts it with its
            // first child.
            if (e.code() != Code::AlreadyExists) throw;
            spdlog::debug("slice {} exists", slice);
            return false;
        }
        const auto result = wait_job(ticket, job, slice, true);
        if (result != "done")
            throw Error(code_for_job_result(result),
                        "creating slice " + slice + ": job finished with result \"" + result + "\"");
        spdlog::info("created slice {}", slice);
        return true;
    }

    void apply_cpuset_v1(const std::string& unit, const Resources& r, const std::vector<pid_t>& pids) {
        if (!cpuset_.available()) {
            spdlog::warn("{}: the cgroup v1 cpuset hierarchy is not writable; AllowedCPUs/AllowedMemoryNodes "
                         "are recorded by systemd but not applied",
                         unit);
            return;
        }
        const auto cg = control_group(unit);
        if (cg.empty()) throw Error(Code::FailedPrecondition, "applying the cpuset of " + unit + ": it has no cgroup");
        with_context("applying the cpuset of " + unit,
                     [&] { cpuset_.apply(unit, cg, r.cpuset_cpus, r.cpuset_mems, pids); });
    }

    Options opt_;
    CgroupVersion version_;
    Jobs jobs_;
    std::mutex call_mu_;  // held across one D-Bus method call (see call())
    CpusetV1 cpuset_;
    std::mutex mu_;
    std::set<std::string> slices_;  // slices known to exist
    bus::Connection bus_;           // last: its thread uses the members above
};

}  // namespace

std::unique_ptr<Manager> make_manager(Options options) {
    return std::make_unique<RealManager>(std::move(options));
}

}  // namespace crisd::systemd
