#include "systemd/logic.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace crisd::systemd {
namespace {

constexpr std::uint64_t kUsecPerSec = 1000000;
constexpr std::uint64_t kQuotaStep = 10000;  // 1 % of a CPU second
constexpr unsigned kMaxCpu = 65535;

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool unit_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
           c == '-' || c == '_' || c == '.' || c == '\\' || c == '@';
}

std::string trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\n");
    if (b == std::string_view::npos) return "";
    const auto e = s.find_last_not_of(" \t\n");
    return std::string(s.substr(b, e - b + 1));
}

unsigned parse_cpu_number(std::string_view s, const std::string& list) {
    unsigned v = 0;
    const auto* end = s.data() + s.size();
    const auto [p, ec] = std::from_chars(s.data(), end, v);
    if (s.empty() || ec != std::errc() || p != end || v > kMaxCpu)
        throw Error(Code::InvalidArgument,
                    "invalid cpuset \"" + list + "\": \"" + std::string(s) +
                        "\" is not a number from 0 to " + std::to_string(kMaxCpu));
    return v;
}

bool is_hex64(std::string_view s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

}  // namespace

bool valid_unit_name(std::string_view name) {
    static constexpr std::array<std::string_view, 11> kSuffixes = {
        ".service", ".socket", ".target", ".device", ".mount", ".automount",
        ".swap",    ".timer",  ".path",   ".slice",  ".scope"};
    if (name.empty() || name.size() > 255) return false;
    if (!std::all_of(name.begin(), name.end(), unit_char)) return false;
    const auto dot = name.rfind('.');
    if (dot == 0 || dot == std::string_view::npos) return false;
    return std::find(kSuffixes.begin(), kSuffixes.end(), name.substr(dot)) != kSuffixes.end();
}

void check_slice_name(const std::string& slice) {
    const auto bad = [&](const std::string& why) {
        return Error(Code::InvalidArgument, "invalid slice name \"" + slice + "\": " + why);
    };
    if (slice == "-.slice") return;
    if (!ends_with(slice, ".slice")) throw bad("a slice name ends in .slice");
    if (!valid_unit_name(slice) || slice.find('@') != std::string::npos)
        throw bad("only letters, digits and \":-_.\\\" are allowed, at most 255 characters");
    const std::string_view prefix(slice.data(), slice.size() - 6);
    if (prefix.front() == '-' || prefix.back() == '-' || prefix.find("--") != std::string::npos)
        throw bad("'-' separates the names of nested slices and cannot start, end or repeat");
}

std::vector<std::string> expand_slice(const std::string& slice) {
    check_slice_name(slice);
    std::vector<std::string> out;
    if (slice == "-.slice") return out;
    const std::string prefix = slice.substr(0, slice.size() - 6);
    for (size_t pos = prefix.find('-'); pos != std::string::npos; pos = prefix.find('-', pos + 1))
        out.push_back(prefix.substr(0, pos) + ".slice");
    out.push_back(slice);
    return out;
}

std::string unit_type_interface(const std::string& unit) {
    const auto dot = unit.rfind('.');
    if (dot == std::string::npos || dot + 1 >= unit.size())
        throw Error(Code::InvalidArgument, "invalid unit name \"" + unit + "\"");
    std::string type = unit.substr(dot + 1);
    type[0] = static_cast<char>(type[0] - 'a' + 'A');
    return "org.freedesktop.systemd1." + type;
}

std::vector<std::pair<std::string, std::string>> unit_log_fields(const std::string& unit) {
    std::vector<std::pair<std::string, std::string>> out{{"CRISD_UNIT", unit}};
    std::string_view n(unit);
    if (!ends_with(n, ".scope")) return out;
    n.remove_suffix(6);
    for (std::string_view prefix : {"crisd-conmon-", "crisd-"}) {
        if (n.substr(0, prefix.size()) == prefix && is_hex64(n.substr(prefix.size()))) {
            const std::string id(n.substr(prefix.size()));
            out.emplace_back("CONTAINER_ID", id.substr(0, 12));
            out.emplace_back("CONTAINER_ID_FULL", id);
            break;
        }
    }
    return out;
}

std::uint64_t cpu_shares_to_weight(std::uint64_t shares) {
    shares = std::clamp<std::uint64_t>(shares, 2, 262144);
    return 1 + ((shares - 2) * 9999) / 262142;
}

std::uint64_t cpu_weight_to_shares(std::uint64_t weight) {
    weight = std::clamp<std::uint64_t>(weight, 1, 10000);
    // The inverse of cpu_shares_to_weight, rounded up so that it round-trips.
    return 2 + ((weight - 1) * 262142 + 9998) / 9999;
}

std::uint64_t cpu_quota_per_sec(std::uint64_t quota_us, std::uint64_t period_us) {
    if (quota_us == kUnlimited) return kUnlimited;
    if (period_us == 0) throw Error(Code::InvalidArgument, "CPU period is 0");
    if (quota_us > kUnlimited / kUsecPerSec)
        throw Error(Code::InvalidArgument, "CPU quota " + std::to_string(quota_us) + " is too large");
    const std::uint64_t per_sec = (quota_us * kUsecPerSec + period_us - 1) / period_us;
    return (per_sec + kQuotaStep - 1) / kQuotaStep * kQuotaStep;
}

std::vector<std::uint8_t> parse_cpuset(const std::string& list) {
    std::vector<std::uint8_t> mask;
    const std::string s = trim(list);
    if (s.empty()) return mask;
    size_t start = 0;
    while (start <= s.size()) {
        size_t comma = s.find(',', start);
        if (comma == std::string::npos) comma = s.size();
        const std::string item = trim(std::string_view(s).substr(start, comma - start));
        if (item.empty())
            throw Error(Code::InvalidArgument, "invalid cpuset \"" + list + "\": empty item");
        unsigned lo = 0, hi = 0;
        if (const auto dash = item.find('-'); dash != std::string::npos) {
            lo = parse_cpu_number(std::string_view(item).substr(0, dash), list);
            hi = parse_cpu_number(std::string_view(item).substr(dash + 1), list);
            if (lo > hi)
                throw Error(Code::InvalidArgument,
                            "invalid cpuset \"" + list + "\": range " + item + " is reversed");
        } else {
            lo = hi = parse_cpu_number(item, list);
        }
        if (mask.size() < hi / 8 + 1) mask.resize(hi / 8 + 1, 0);
        for (unsigned c = lo; c <= hi; ++c) mask[c / 8] = static_cast<std::uint8_t>(mask[c / 8] | (1u << (c % 8)));
        start = comma + 1;
    }
    return mask;
}

std::string format_cpuset(const std::vector<std::uint8_t>& mask) {
    std::string out;
    const unsigned n = static_cast<unsigned>(mask.size() * 8);
    const auto set = [&](unsigned c) { return c < n && (mask[c / 8] & (1u << (c % 8))) != 0; };
    for (unsigned c = 0; c < n; ++c) {
        if (!set(c)) continue;
        unsigned e = c;
        while (set(e + 1)) ++e;
        if (!out.empty()) out += ',';
        out += std::to_string(c);
        if (e > c) out += "-" + std::to_string(e);
        c = e;
    }
    return out;
}

void validate(const Resources& r) {
    const auto bad = [](const std::string& what) { return Error(Code::InvalidArgument, what); };
    if (r.cpu_shares && (*r.cpu_shares < 2 || *r.cpu_shares > 262144))
        throw bad("CPU shares " + std::to_string(*r.cpu_shares) + " out of range 2..262144");
    if (r.cpu_period_us && (*r.cpu_period_us < 1000 || *r.cpu_period_us > 1000000))
        throw bad("CPU period " + std::to_string(*r.cpu_period_us) +
                  " us out of range 1000..1000000");
    if (r.cpu_quota_us && *r.cpu_quota_us != kUnlimited) {
        if (*r.cpu_quota_us < 1000)
            throw bad("CPU quota " + std::to_string(*r.cpu_quota_us) + " us is below 1000 us");
        if (*r.cpu_quota_us > kUnlimited / kUsecPerSec)
            throw bad("CPU quota " + std::to_string(*r.cpu_quota_us) + " us is too large");
    }
    if (r.memory_max && *r.memory_max == 0) throw bad("memory limit 0");
    if (r.tasks_max && *r.tasks_max == 0) throw bad("tasks limit 0");
    if (r.cpuset_cpus) with_context("cpuset_cpus", [&] { parse_cpuset(*r.cpuset_cpus); });
    if (r.cpuset_mems) with_context("cpuset_mems", [&] { parse_cpuset(*r.cpuset_mems); });
}

std::vector<Property> resource_properties(const Resources& r, CgroupVersion v) {
    validate(r);
    std::vector<Property> out;
    if (r.description) out.push_back({"Description", *r.description});
    if (r.cpu_shares) {
        if (v == CgroupVersion::V1)
            out.push_back({"CPUShares", *r.cpu_shares});
        else
            out.push_back({"CPUWeight", cpu_shares_to_weight(*r.cpu_shares)});
    }
    if (r.cpu_quota_us)
        out.push_back({"CPUQuotaPerSecUSec",
                       cpu_quota_per_sec(*r.cpu_quota_us, r.cpu_period_us.value_or(100000))});
    if (r.cpu_period_us) out.push_back({"CPUQuotaPeriodUSec", *r.cpu_period_us});
    if (r.memory_max) out.push_back({"MemoryMax", *r.memory_max});
    // systemd has no swap limit on cgroup v1 (memory.memsw is the runtime's).
    if (r.memory_swap_max && v == CgroupVersion::V2) out.push_back({"MemorySwapMax", *r.memory_swap_max});
    if (r.tasks_max) out.push_back({"TasksMax", *r.tasks_max});
    if (r.cpuset_cpus) out.push_back({"AllowedCPUs", parse_cpuset(*r.cpuset_cpus)});
    if (r.cpuset_mems) out.push_back({"AllowedMemoryNodes", parse_cpuset(*r.cpuset_mems)});
    return out;
}

std::vector<Property> scope_properties(const ScopeSpec& spec, const std::string& default_slice,
                                       CgroupVersion v) {
    if (!valid_unit_name(spec.name) || !ends_with(spec.name, ".scope") ||
        spec.name.find('@') != std::string::npos)
        throw Error(Code::InvalidArgument, "invalid scope name \"" + spec.name + "\"");
    if (spec.pids.empty())
        throw Error(Code::InvalidArgument, "scope " + spec.name + " has no processes");
    const std::string slice = spec.slice.empty() ? default_slice : spec.slice;
    check_slice_name(slice);

    std::vector<Property> out;
    out.push_back({"Description", spec.description.empty() ? "crisd " + spec.name : spec.description});
    out.push_back({"Slice", slice});
    std::vector<std::uint32_t> pids;
    for (pid_t p : spec.pids) {
        if (p <= 0)
            throw Error(Code::InvalidArgument, "scope " + spec.name + ": invalid PID " + std::to_string(p));
        pids.push_back(static_cast<std::uint32_t>(p));
    }
    out.push_back({"PIDs", std::move(pids)});
    out.push_back({"Delegate", spec.delegate});
    out.push_back({"CollectMode", std::string("inactive-or-failed")});
    if (spec.kill_signal) {
        if (*spec.kill_signal <= 0 || *spec.kill_signal > 64)
            throw Error(Code::InvalidArgument,
                        "scope " + spec.name + ": invalid kill signal " + std::to_string(*spec.kill_signal));
        out.push_back({"KillSignal", static_cast<std::int32_t>(*spec.kill_signal)});
    }
    auto resources = spec.resources;
    resources.description.reset();  // the scope's is spec.description, above
    auto limits = with_context("scope " + spec.name, [&] { return resource_properties(resources, v); });
    out.insert(out.end(), limits.begin(), limits.end());
    return out;
}

Code code_for_dbus_error(std::string_view name) {
    struct Entry {
        std::string_view name;
        Code code;
    };
    static constexpr Entry kMap[] = {
        {"org.freedesktop.systemd1.UnitExists", Code::AlreadyExists},
        {"org.freedesktop.DBus.Error.FileExists", Code::AlreadyExists},
        {"org.freedesktop.systemd1.NoSuchUnit", Code::NotFound},
        {"org.freedesktop.systemd1.NoUnitForPID", Code::NotFound},
        {"org.freedesktop.systemd1.NoUnitForInvocationID", Code::NotFound},
        {"org.freedesktop.systemd1.NoSuchJob", Code::NotFound},
        {"org.freedesktop.systemd1.NoSuchProcess", Code::NotFound},
        {"org.freedesktop.DBus.Error.UnixProcessIdUnknown", Code::NotFound},
        {"org.freedesktop.DBus.Error.FileNotFound", Code::NotFound},
        {"org.freedesktop.DBus.Error.UnknownObject", Code::NotFound},
        {"org.freedesktop.DBus.Error.InvalidArgs", Code::InvalidArgument},
        {"org.freedesktop.DBus.Error.InvalidSignature", Code::InvalidArgument},
        {"org.freedesktop.DBus.Error.MatchRuleInvalid", Code::InvalidArgument},
        {"org.freedesktop.DBus.Error.AccessDenied", Code::PermissionDenied},
        {"org.freedesktop.DBus.Error.AuthFailed", Code::PermissionDenied},
        {"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", Code::PermissionDenied},
        {"System.Error.EPERM", Code::PermissionDenied},
        {"System.Error.EACCES", Code::PermissionDenied},
        {"org.freedesktop.systemd1.UnitMasked", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.UnitGenerated", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.UnitLinked", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.UnitBad", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.LoadFailed", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.JobTypeNotApplicable", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.OnlyByDependency", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.TransactionIsDestructive", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.TransactionJobsConflicting", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.TransactionOrderIsCyclic", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.UnitInactive", Code::FailedPrecondition},
        {"org.freedesktop.systemd1.ShuttingDown", Code::Unavailable},
        {"org.freedesktop.DBus.Error.ServiceUnknown", Code::Unavailable},
        {"org.freedesktop.DBus.Error.NameHasNoOwner", Code::Unavailable},
        {"org.freedesktop.DBus.Error.Disconnected", Code::Unavailable},
        {"org.freedesktop.DBus.Error.NoServer", Code::Unavailable},
        {"org.freedesktop.DBus.Error.NoNetwork", Code::Unavailable},
        {"org.freedesktop.DBus.Error.BadAddress", Code::Unavailable},
        {"System.Error.ENOTCONN", Code::Unavailable},
        {"System.Error.ECONNRESET", Code::Unavailable},
        {"System.Error.ECONNREFUSED", Code::Unavailable},
        {"System.Error.EPIPE", Code::Unavailable},
        {"System.Error.ENOENT", Code::Unavailable},
        {"System.Error.ENXIO", Code::Unavailable},
        {"org.freedesktop.DBus.Error.NoReply", Code::DeadlineExceeded},
        {"org.freedesktop.DBus.Error.Timeout", Code::DeadlineExceeded},
        {"org.freedesktop.DBus.Error.TimedOut", Code::DeadlineExceeded},
        {"org.freedesktop.DBus.Error.NoMemory", Code::ResourceExhausted},
        {"org.freedesktop.DBus.Error.LimitsExceeded", Code::ResourceExhausted},
        {"org.freedesktop.systemd1.TooManyTasks", Code::ResourceExhausted},
        {"org.freedesktop.DBus.Error.UnknownMethod", Code::Unimplemented},
        {"org.freedesktop.DBus.Error.UnknownInterface", Code::Unimplemented},
        {"org.freedesktop.DBus.Error.UnknownProperty", Code::Unimplemented},
        {"org.freedesktop.DBus.Error.NotSupported", Code::Unimplemented},
        {"org.freedesktop.DBus.Error.PropertyReadOnly", Code::InvalidArgument},
    };
    for (const auto& e : kMap)
        if (e.name == name) return e.code;
    return Code::Internal;
}

bool is_transient_dbus_error(std::string_view name) {
    static constexpr std::string_view kTransient[] = {
        "org.freedesktop.DBus.Error.Disconnected", "org.freedesktop.DBus.Error.NoReply",
        "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.NoServer",       "System.Error.ENOTCONN",
        "System.Error.ECONNRESET",                   "System.Error.EPIPE",
    };
    return std::find(std::begin(kTransient), std::end(kTransient), name) != std::end(kTransient);
}

Code code_for_job_result(std::string_view result) {
    if (result == "done") return Code::Ok;
    if (result == "canceled") return Code::Aborted;
    if (result == "timeout") return Code::DeadlineExceeded;
    if (result == "dependency" || result == "skipped" || result == "invalid" || result == "unsupported")
        return Code::FailedPrecondition;
    return Code::Internal;
}

Error dbus_error(const std::string& what, std::string_view name, std::string_view message) {
    std::string text = what + ": ";
    text += message.empty() ? std::string(name) : std::string(message) + " (" + std::string(name) + ")";
    return Error(code_for_dbus_error(name), text);
}

}  // namespace crisd::systemd
