// systemd as crisd uses it: transient scopes and slices, their resource
// limits, stop/kill, and a unit's state and cgroup, through the system
// manager's D-Bus API (org.freedesktop.systemd1.Manager on the system bus).
//
// Callers hold a Manager&: make_manager() gives the real one (sdbus-c++, one
// shared bus connection), systemd/fake.hpp an in-memory one for unit tests.
// Every method is thread-safe and throws crisd::Error; D-Bus errors are mapped
// by their name (org.freedesktop.systemd1.UnitExists -> AlreadyExists,
// org.freedesktop.DBus.Error.InvalidArgs -> InvalidArgument, AccessDenied ->
// PermissionDenied, no bus -> Unavailable, ...).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace crisd::systemd {

// A limit set to this value is removed ("infinity" in systemd's terms).
inline constexpr std::uint64_t kUnlimited = UINT64_MAX;

// Resource limits of a scope, as the CRI gives them. An unset field is left
// as it is (at creation: systemd's default, i.e. no limit).
struct Resources {
    std::optional<std::uint64_t> cpu_shares;     // 2..262144; CPUShares (v1) or CPUWeight (v2)
    std::optional<std::uint64_t> cpu_quota_us;   // per period, >= 1000, or kUnlimited
    std::optional<std::uint64_t> cpu_period_us;  // 1000..1000000; default 100000 with a quota
    std::optional<std::uint64_t> memory_max;     // bytes, or kUnlimited; MemoryMax
    std::optional<std::uint64_t> memory_swap_max;  // bytes of swap, or kUnlimited; MemorySwapMax (v2 only)
    std::optional<std::uint64_t> tasks_max;      // or kUnlimited; TasksMax
    std::optional<std::string> cpuset_cpus;      // "0-3,8"; AllowedCPUs ("" = all)
    std::optional<std::string> cpuset_mems;      // "0"; AllowedMemoryNodes ("" = all)
    // Not a limit: a new Description (what `systemctl status` shows), sent
    // with the limits by set_properties, for a scope someone else named (the
    // OCI runtime's "libcontainer container <id>"). Ignored by start_scope,
    // which takes ScopeSpec::description.
    std::optional<std::string> description;

    bool empty() const noexcept {
        return !cpu_shares && !cpu_quota_us && !cpu_period_us && !memory_max && !memory_swap_max &&
               !tasks_max && !cpuset_cpus && !cpuset_mems && !description;
    }
};

struct ScopeSpec {
    std::string name;         // "crisd-<id>.scope"
    std::string slice;        // "" = crisd.slice
    std::string description;  // shown by systemctl status
    std::vector<pid_t> pids;  // moved into the scope; at least one
    bool delegate = true;     // Delegate=yes: the OCI runtime manages the subtree
    // KillSignal=: a monitor's scope gets a signal the monitor ignores, so that
    // stopping the scope does not take the monitor down before its container.
    std::optional<int> kill_signal;
    Resources resources;
};

struct UnitState {
    std::string load_state;    // "loaded", "not-found", ...
    std::string active_state;  // "active", "failed", "inactive", ...
    std::string sub_state;     // "running", "abandoned", ...
};

class Manager {
public:
    virtual ~Manager() = default;

    // Creates and starts a transient scope (StartTransientUnit, mode "fail")
    // and waits for its start job. A failed start gets reset-failed and one
    // retry. The slice must exist or be creatable (see ensure_slice).
    virtual void start_scope(const ScopeSpec& spec) = 0;

    // Makes sure `slice` and every slice above it ("a-b-c.slice" sits in
    // "a-b.slice", which sits in "a.slice") exist and are active, creating the
    // missing ones as transient slices. Cached: a slice is created once.
    // True when `slice` itself was created now as a transient unit (so
    // nothing else owns it and its creator should stop it when done); false
    // when it was loaded already (the kubelet's, a unit file's, or cached).
    virtual bool ensure_slice(const std::string& slice) = 0;

    // Stops a unit and waits for the stop job. A unit that does not exist is
    // already stopped (no error).
    virtual void stop_unit(const std::string& unit) = 0;

    // Stops `slice` (and resets it if failed) only when nothing runs in it
    // any more: no unit in its cgroup, whoever put it there (a pod still
    // being made, a nested slice, someone else's unit). True when it was
    // stopped or is gone, false when it was left because it is in use.
    virtual bool stop_slice_if_empty(const std::string& slice) = 0;

    // Sends `signal` to every process of the unit (KillUnit, whom "all").
    virtual void kill_unit(const std::string& unit, int signal) = 0;

    // Changes limits of a running unit (SetUnitProperties, runtime=true).
    virtual void set_properties(const std::string& unit, const Resources& resources) = 0;

    // NotFound when the unit is not loaded.
    virtual UnitState unit_state(const std::string& unit) = 0;

    // The unit's cgroup path ("/crisd.slice/crisd-<id>.scope"); NotFound when
    // the unit is not loaded, "" when it has no cgroup (not running).
    virtual std::string control_group(const std::string& unit) = 0;

    // ResetFailedUnit; no error when the unit is not loaded.
    virtual void reset_failed(const std::string& unit) = 0;
};

struct Options {
    // How long one job (start/stop) may take before DeadlineExceeded.
    std::chrono::milliseconds job_timeout{30000};
    // Timeout of one D-Bus method call.
    std::chrono::milliseconds call_timeout{25000};
    // Slice for scopes without one.
    std::string default_slice = "crisd.slice";
    // "" = the system bus; else a D-Bus address (tests).
    std::string bus_address;
};

// The real manager on the system bus. Does not connect until first used.
std::unique_ptr<Manager> make_manager(Options options = {});

}  // namespace crisd::systemd
