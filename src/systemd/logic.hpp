// The pure part of the systemd module: names, property encoding, error
// mapping. No D-Bus here, so that all of it is unit-tested. Used by the real
// Manager and the fake; callers of the module need only systemd.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/error.hpp"
#include "systemd/systemd.hpp"

namespace crisd::systemd {

enum class CgroupVersion { V1, V2 };  // V1 = legacy or hybrid (controllers on v1)

// ---- names ---------------------------------------------------------------

// A valid unit name: [A-Za-z0-9:_.\-], at most 255 characters, a known suffix.
bool valid_unit_name(std::string_view name);

// Throws InvalidArgument unless `slice` is a valid slice name: "-.slice" or
// "a.slice", "a-b.slice" with no empty dash-separated part.
void check_slice_name(const std::string& slice);

// The slices from the top down to `slice` itself, as systemd nests them:
// "kubepods-burstable-pod1.slice" -> {"kubepods.slice", "kubepods-burstable.slice",
// "kubepods-burstable-pod1.slice"}; "-.slice" -> {}. Throws InvalidArgument.
std::vector<std::string> expand_slice(const std::string& slice);

// The D-Bus interface with the unit-type properties (ControlGroup): Scope,
// Slice, Service, ... from the suffix.
std::string unit_type_interface(const std::string& unit);

// Journal fields for a line about `unit`: CRISD_UNIT, and CONTAINER_ID (12 hex)
// plus CONTAINER_ID_FULL for crisd-<id>.scope and crisd-conmon-<id>.scope.
std::vector<std::pair<std::string, std::string>> unit_log_fields(const std::string& unit);

// ---- resource encoding -------------------------------------------------

// CRI/cgroup v1 cpu.shares (2..262144) <-> cgroup v2 cpu.weight (1..10000),
// the conversion Kubernetes and runc use (shares 2 -> 1, 1024 -> 39, 262144 -> 10000).
std::uint64_t cpu_shares_to_weight(std::uint64_t shares);
std::uint64_t cpu_weight_to_shares(std::uint64_t weight);

// CPUQuotaPerSecUSec for a CFS quota/period, rounded up to a whole 10 ms:
// systemd stores a transient unit's quota as an integer percentage, so any
// other value would change at the next daemon-reload (runc does the same).
std::uint64_t cpu_quota_per_sec(std::uint64_t quota_us, std::uint64_t period_us);

// "0-3,8" -> the AllowedCPUs= bitmask: byte i bit j is CPU 8*i+j. "" -> {}.
// Throws InvalidArgument for anything else than a list of numbers and ranges.
std::vector<std::uint8_t> parse_cpuset(const std::string& list);
// The canonical list for a bitmask: {0x0f, 0x01} -> "0-3,8".
std::string format_cpuset(const std::vector<std::uint8_t>& mask);

// Throws InvalidArgument (naming the field) for values systemd or the kernel
// would refuse.
void validate(const Resources& r);

// One unit property for StartTransientUnit / SetUnitProperties (a(sv)).
using PropertyValue = std::variant<bool, std::int32_t, std::uint32_t, std::uint64_t, std::string,
                                   std::vector<std::uint32_t>, std::vector<std::uint8_t>>;
struct Property {
    std::string name;
    PropertyValue value;
    bool operator==(const Property&) const = default;
};

// The limit properties for `r` (validated first): CPUShares on v1, CPUWeight on
// v2; CPUQuotaPerSecUSec (+ CPUQuotaPeriodUSec); MemoryMax; TasksMax;
// AllowedCPUs; AllowedMemoryNodes.
std::vector<Property> resource_properties(const Resources& r, CgroupVersion v);

// Every property of a new scope: Description, Slice, PIDs, Delegate,
// CollectMode=inactive-or-failed, KillSignal, then the limits.
// `default_slice` is used when spec.slice is empty.
std::vector<Property> scope_properties(const ScopeSpec& spec, const std::string& default_slice,
                                       CgroupVersion v);

// ---- errors ---------------------------------------------------------------

// The crisd::Code for a D-Bus error name (never its message).
Code code_for_dbus_error(std::string_view name);

// Transport trouble worth one retry on a fresh connection (disconnected, no
// reply, systemd not on the bus for a moment during daemon-reexec).
bool is_transient_dbus_error(std::string_view name);

// The crisd::Code for a finished job's result: "done" -> Ok, "canceled" ->
// Aborted, "timeout" -> DeadlineExceeded, "dependency"/"skipped"/"invalid" ->
// FailedPrecondition, "failed" and anything else -> Internal.
Code code_for_job_result(std::string_view result);

// Error for a failed call: "<what>: <message> (<name>)" with code_for_dbus_error.
Error dbus_error(const std::string& what, std::string_view name, std::string_view message);

}  // namespace crisd::systemd
