#include "runtime/seccomp.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace crisd::runtime {
namespace {

using json = nlohmann::json;

const char* const kActions[] = {"SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
                                "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          "SCMP_ACT_NOTIFY"};
const char* const kOps[] = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
                            "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};

// libseccomp's arch names (what profiles' includes/excludes use) and their
// SCMP_ARCH_ constants (what archMap and OCI architectures use).
const std::map<std::string, std::string>& scmp_arches() {
    static const std::map<std::string, std::string> m = {
        {"x86", "SCMP_ARCH_X86"},           {"amd64", "SCMP_ARCH_X86_64"},
        {"x32", "SCMP_ARCH_X32"},           {"arm", "SCMP_ARCH_ARM"},
        {"arm64", "SCMP_ARCH_AARCH64"},     {"mips", "SCMP_ARCH_MIPS"},
        {"mips64", "SCMP_ARCH_MIPS64"},     {"mips64n32", "SCMP_ARCH_MIPS64N32"},
        {"mipsel", "SCMP_ARCH_MIPSEL"},     {"mipsel64", "SCMP_ARCH_MIPSEL64"},
        {"mipsel64n32", "SCMP_ARCH_MIPSEL64N32"}, {"ppc", "SCMP_ARCH_PPC"},
        {"ppc64", "SCMP_ARCH_PPC64"},       {"ppc64le", "SCMP_ARCH_PPC64LE"},
        {"s390", "SCMP_ARCH_S390"},         {"s390x", "SCMP_ARCH_S390X"},
        {"riscv64", "SCMP_ARCH_RISCV64"},   {"loong64", "SCMP_ARCH_LOONGARCH64"},
    };
    return m;
}

bool known(const char* const* list, std::size_t n, const std::string& s) {
    for (std::size_t i = 0; i < n; ++i)
        if (s == list[i]) return true;
    return false;
}

Error bad(const std::string& origin, const std::string& what) {
    return Error(Code::InvalidArgument, "seccomp profile " + origin + ": " + what);
}

std::vector<std::string> string_list(const json& j, const std::string& origin, const std::string& where) {
    std::vector<std::string> out;
    if (j.is_null()) return out;
    if (!j.is_array()) throw bad(origin, where + " is not a list");
    for (const auto& s : j) {
        if (!s.is_string()) throw bad(origin, where + " has an entry that is not a string");
        out.push_back(s.get<std::string>());
    }
    return out;
}

std::uint64_t unsigned_of(const json& j, const std::string& origin, const std::string& where) {
    if (!j.is_number_integer() || (!j.is_number_unsigned() && j.get<std::int64_t>() < 0))
        throw bad(origin, where + " is not a non-negative integer");
    return j.get<std::uint64_t>();
}

// "4.8" or "5.10.3" -> {major, minor}.
std::pair<int, int> parse_version(const std::string& v, const std::string& origin, const std::string& where) {
    int major = 0, minor = 0;
    char tail = 0;
    const int n = std::sscanf(v.c_str(), "%d.%d%c", &major, &minor, &tail);
    if (n < 2 || (n == 3 && tail != '.') || major < 0 || minor < 0)
        throw bad(origin, where + " \"" + v + "\" is not a kernel version (major.minor)");
    return {major, minor};
}

// A rule's includes or excludes, checked.
struct Condition {
    std::vector<std::string> caps, arches;
    std::optional<std::pair<int, int>> min_kernel;
};
Condition condition_of(const json& rule, const char* key, const std::string& origin, const std::string& where) {
    Condition c;
    const auto it = rule.find(key);
    if (it == rule.end() || it->is_null()) return c;
    if (!it->is_object()) throw bad(origin, where + "." + key + " is not an object");
    const std::string w = where + "." + key;
    if (it->contains("caps")) c.caps = string_list((*it)["caps"], origin, w + ".caps");
    if (it->contains("arches")) c.arches = string_list((*it)["arches"], origin, w + ".arches");
    if (it->contains("minKernel") && !(*it)["minKernel"].is_null()) {
        const auto& mk = (*it)["minKernel"];
        if (!mk.is_string()) throw bad(origin, w + ".minKernel is not a string");
        if (!mk.get<std::string>().empty()) c.min_kernel = parse_version(mk.get<std::string>(), origin, w + ".minKernel");
    }
    return c;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    for (const auto& x : v)
        if (x == s) return true;
    return false;
}

json args_of(const json& rule, const std::string& origin, const std::string& where) {
    json out = json::array();
    const auto it = rule.find("args");
    if (it == rule.end() || it->is_null()) return out;
    if (!it->is_array()) throw bad(origin, where + ".args is not a list");
    for (const auto& a : *it) {
        if (!a.is_object()) throw bad(origin, where + ".args has an entry that is not an object");
        if (!a.contains("index") || !a.contains("value") || !a.contains("op"))
            throw bad(origin, where + ".args: an entry needs index, value and op");
        json arg;
        arg["index"] = unsigned_of(a["index"], origin, where + ".args.index");
        if (arg["index"].get<std::uint64_t>() > 5) throw bad(origin, where + ".args.index is above 5");
        arg["value"] = unsigned_of(a["value"], origin, where + ".args.value");
        if (a.contains("valueTwo") && !a["valueTwo"].is_null())
            arg["valueTwo"] = unsigned_of(a["valueTwo"], origin, where + ".args.valueTwo");
        if (!a["op"].is_string() || !known(kOps, std::size(kOps), a["op"].get<std::string>()))
            throw bad(origin, where + ".args.op " + a["op"].dump() + " is not a seccomp comparison");
        arg["op"] = a["op"];
        out.push_back(arg);
    }
    return out;
}

// The rest of an open file; Error(code) naming `what` on a read error.
std::string read_all(int fd, Code code, const std::string& what) {
    std::string text;
    char buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error(code, what + ": " + std::strerror(errno), errno);
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    return text;
}

std::string action_of(const json& j, const std::string& origin, const std::string& where) {
    if (!j.is_string() || !known(kActions, std::size(kActions), j.get<std::string>()))
        throw bad(origin, where + " " + j.dump() + " is not a seccomp action");
    return j.get<std::string>();
}

}  // namespace

SeccompRequest seccomp_localhost(const std::string& ref) {
    if (ref.empty()) throw Error(Code::InvalidArgument, "a Localhost seccomp profile needs localhost_ref");
    if (ref[0] != '/')
        throw Error(Code::InvalidArgument, "the Localhost seccomp profile \"" + ref + "\" is not an absolute path");
    return {SeccompKind::Localhost, ref};
}

SeccompRequest seccomp_from_path(const std::string& path) {
    if (path.empty() || path == "unconfined") return {};
    if (path == "runtime/default" || path == "docker/default") return {SeccompKind::RuntimeDefault, ""};
    if (path.rfind("localhost/", 0) == 0) return seccomp_localhost(path.substr(std::strlen("localhost/")));
    throw Error(Code::InvalidArgument, "seccomp_profile_path \"" + path +
                                           "\" is not unconfined, runtime/default, docker/default or "
                                           "localhost/<absolute path>");
}

std::string to_string(const SeccompRequest& r) {
    switch (r.kind) {
    case SeccompKind::RuntimeDefault: return "runtime/default";
    case SeccompKind::Localhost: return "localhost/" + r.localhost;
    case SeccompKind::Unconfined: break;
    }
    return "unconfined";
}

std::string seccomp_native_arch() {
    utsname u{};
    ::uname(&u);
    const std::string m = u.machine;
    static const std::map<std::string, std::string> kMachines = {
        {"x86_64", "amd64"}, {"i386", "x86"},       {"i486", "x86"},       {"i586", "x86"},
        {"i686", "x86"},     {"aarch64", "arm64"},  {"arm64", "arm64"},    {"ppc64le", "ppc64le"},
        {"ppc64", "ppc64"},  {"ppc", "ppc"},        {"s390x", "s390x"},    {"s390", "s390"},
        {"riscv64", "riscv64"}, {"mips64", "mips64"}, {"mips", "mips"},    {"loongarch64", "loong64"}};
    if (const auto it = kMachines.find(m); it != kMachines.end()) return it->second;
    if (m.rfind("arm", 0) == 0) return "arm";
    return m;
}

std::pair<int, int> kernel_version() {
    utsname u{};
    ::uname(&u);
    int major = 0, minor = 0;
    std::sscanf(u.release, "%d.%d", &major, &minor);
    return {major, minor};
}

json parse_seccomp_profile(const std::string& text, const std::string& origin) {
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded()) throw bad(origin, "not valid JSON");
    if (!j.is_object()) throw bad(origin, "not a JSON object");
    return j;
}

json seccomp_to_oci(const json& profile, const SeccompTarget& t, const std::string& origin) {
    if (!profile.is_object()) throw bad(origin, "not a JSON object");
    if (!profile.contains("defaultAction")) throw bad(origin, "defaultAction is missing");
    json out;
    out["defaultAction"] = action_of(profile["defaultAction"], origin, "defaultAction");
    if (profile.contains("defaultErrnoRet") && !profile["defaultErrnoRet"].is_null())
        out["defaultErrnoRet"] = unsigned_of(profile["defaultErrnoRet"], origin, "defaultErrnoRet");

    const bool has_arches = profile.contains("architectures") && !profile["architectures"].is_null() &&
                            !profile["architectures"].empty();
    const bool has_map = profile.contains("archMap") && !profile["archMap"].is_null() && !profile["archMap"].empty();
    if (has_arches && has_map) throw bad(origin, "has both architectures and archMap; use one");
    json arches = json::array();
    if (has_arches)
        for (const auto& a : string_list(profile["architectures"], origin, "architectures")) arches.push_back(a);
    if (has_map) {
        if (!profile["archMap"].is_array()) throw bad(origin, "archMap is not a list");
        const auto native = scmp_arches().find(t.arch);
        for (const auto& m : profile["archMap"]) {
            if (!m.is_object() || !m.contains("architecture") || !m["architecture"].is_string())
                throw bad(origin, "archMap has an entry without an architecture");
            const auto subs = m.contains("subArchitectures")
                                  ? string_list(m["subArchitectures"], origin, "archMap.subArchitectures")
                                  : std::vector<std::string>{};
            if (native == scmp_arches().end() || m["architecture"] != native->second) continue;
            arches.push_back(m["architecture"]);
            for (const auto& s : subs) arches.push_back(s);
        }
    }
    if (!arches.empty()) out["architectures"] = arches;
    if (profile.contains("flags") && !profile["flags"].is_null()) {
        json flags = json::array();
        for (const auto& f : string_list(profile["flags"], origin, "flags")) flags.push_back(f);
        if (!flags.empty()) out["flags"] = flags;
    }
    for (const char* key : {"listenerPath", "listenerMetadata"})
        if (profile.contains(key) && profile[key].is_string() && !profile[key].get<std::string>().empty())
            out[key] = profile[key];

    json syscalls = json::array();
    const auto it = profile.find("syscalls");
    if (it != profile.end() && !it->is_null()) {
        if (!it->is_array()) throw bad(origin, "syscalls is not a list");
        std::size_t i = 0;
        for (const auto& rule : *it) {
            const std::string where = "syscalls[" + std::to_string(i++) + "]";
            if (!rule.is_object()) throw bad(origin, where + " is not an object");
            // Everything is checked before a rule is filtered out: a broken
            // rule is an error on every node, not only where it applies.
            std::vector<std::string> names;
            if (rule.contains("names")) names = string_list(rule["names"], origin, where + ".names");
            if (rule.contains("name") && !rule["name"].is_null()) {
                if (!rule["name"].is_string()) throw bad(origin, where + ".name is not a string");
                if (!rule["name"].get<std::string>().empty()) names.insert(names.begin(), rule["name"]);
            }
            if (!rule.contains("action")) throw bad(origin, where + ".action is missing");
            const auto action = action_of(rule["action"], origin, where + ".action");
            std::optional<std::uint64_t> errno_ret;
            if (rule.contains("errnoRet") && !rule["errnoRet"].is_null())
                errno_ret = unsigned_of(rule["errnoRet"], origin, where + ".errnoRet");
            const auto args = args_of(rule, origin, where);
            const auto inc = condition_of(rule, "includes", origin, where);
            const auto exc = condition_of(rule, "excludes", origin, where);

            // excludes: any match drops the rule.
            if (contains(exc.arches, t.arch)) continue;
            bool excluded = false;
            for (const auto& c : exc.caps) excluded = excluded || t.caps.count(c) > 0;
            if (excluded) continue;
            if (exc.min_kernel && t.kernel >= *exc.min_kernel) continue;
            // includes: every condition must hold.
            if (!inc.arches.empty() && !contains(inc.arches, t.arch)) continue;
            bool included = true;
            for (const auto& c : inc.caps) included = included && t.caps.count(c) > 0;
            if (!included) continue;
            if (inc.min_kernel && t.kernel < *inc.min_kernel) continue;

            if (names.empty()) continue;  // nothing to filter
            json s = {{"names", names}, {"action", action}};
            if (errno_ret) s["errnoRet"] = *errno_ret;
            if (!args.empty()) s["args"] = args;
            syscalls.push_back(std::move(s));
        }
    }
    if (!syscalls.empty()) out["syscalls"] = syscalls;
    return out;
}

SeccompProfiles::SeccompProfiles(std::string default_path)
    : default_path_(std::move(default_path)), arch_(seccomp_native_arch()), kernel_(kernel_version()) {}

std::shared_ptr<const json> SeccompProfiles::default_profile() {
    const std::string what = "the default seccomp profile " + default_path_ + " (crisd.runtime.seccomp_profile)";
    UniqueFd fd(::open(default_path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw Error(Code::FailedPrecondition, what + ": " + std::strerror(errno), errno);
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) throw Error(Code::FailedPrecondition, what + ": " + std::strerror(errno), errno);
    const Stamp stamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                      static_cast<std::uint64_t>(st.st_size),
                      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
    std::lock_guard lock(mu_);
    if (default_ && stamp_ && *stamp_ == stamp) return default_;
    const auto text = read_all(fd.get(), Code::FailedPrecondition, what);
    json profile;
    try {
        profile = parse_seccomp_profile(text, default_path_);
        // Checked once here, so a broken file is reported as such.
        seccomp_to_oci(profile, {arch_, {}, kernel_}, default_path_);
    } catch (const Error& e) {
        throw Error(Code::FailedPrecondition, std::string(e.what()) + " (crisd.runtime.seccomp_profile)");
    }
    default_ = std::make_shared<const json>(std::move(profile));
    stamp_ = stamp;
    ++reads_;
    spdlog::info("read the default seccomp profile {}", default_path_);
    return default_;
}

std::optional<json> SeccompProfiles::for_container(const SeccompRequest& request, bool privileged,
                                                   const std::set<std::string>& caps) {
    if (privileged || request.kind == SeccompKind::Unconfined) return std::nullopt;
    const SeccompTarget target{arch_, caps, kernel_};
    if (request.kind == SeccompKind::RuntimeDefault) {
        const auto profile = default_profile();
        return seccomp_to_oci(*profile, target, default_path_);
    }
    const auto& path = request.localhost;
    if (path.empty() || path[0] != '/')
        throw Error(Code::InvalidArgument, "the Localhost seccomp profile \"" + path + "\" is not an absolute path");
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw Error(Code::InvalidArgument, "seccomp profile " + path + ": " + std::strerror(errno), errno);
    const auto text = read_all(fd.get(), Code::InvalidArgument, "seccomp profile " + path);
    return seccomp_to_oci(parse_seccomp_profile(text, path), target, path);
}

}  // namespace crisd::runtime
