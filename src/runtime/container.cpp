#include "runtime/container.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "runtime/oci.hpp"

namespace crisd::runtime {
namespace {

using json = nlohmann::json;

const char* const kAllCaps[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};

// CRI-O's default_capabilities.
const char* const kDefaultCaps[] = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
                                    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                                    "CAP_KILL"};

std::string cap_name(std::string c) {
    for (auto& ch : c) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (c.rfind("CAP_", 0) != 0) c = "CAP_" + c;
    return c;
}

std::vector<std::string> strings(const json& j) {
    std::vector<std::string> out;
    if (j.is_array())
        for (const auto& s : j)
            if (s.is_string()) out.push_back(s.get<std::string>());
    return out;
}

// A file of the container's root filesystem, resolved inside it: a symlink in
// the image (etc/passwd -> /etc/shadow) cannot reach the node's files.
// Empty when the file is missing.
std::string read_in_rootfs(const std::string& rootfs, const char* rel) {
    UniqueFd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) throw_errno("opening the root filesystem " + rootfs);
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;  // symlinks resolve, but inside the root
    UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, root.get(), rel, &how, sizeof how)));
    if (!fd) {
        if (errno == ENOENT || errno == ENOTDIR) return "";
        throw_errno(std::string("opening ") + rel + " in " + rootfs);
    }
    std::string data;
    char buf[8192];
    for (;;) {
        const ssize_t r = ::read(fd.get(), buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(std::string("reading ") + rel + " in " + rootfs);
        }
        if (r == 0) break;
        data.append(buf, static_cast<size_t>(r));
    }
    return data;
}

// The ':'-separated fields of a passwd or group line.
std::vector<std::string> colon_fields(const std::string& line) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string part;
    while (std::getline(ss, part, ':')) f.push_back(part);
    return f;
}

bool all_digits(const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// A decimal number that fits in 32 bits; nullopt for anything else (an image
// may carry a 20-digit uid: that is its error, never an escaping exception).
std::optional<std::uint32_t> parse_u32(const std::string& s) {
    std::uint32_t v = 0;
    const auto* end = s.data() + s.size();
    const auto [p, ec] = std::from_chars(s.data(), end, v);
    if (s.empty() || ec != std::errc() || p != end) return std::nullopt;
    return v;
}

// name:x:uid:gid:gecos:home:shell lines.
struct PasswdEntry {
    std::string name;
    std::uint32_t uid = 0, gid = 0;
    std::string home;
};
std::vector<PasswdEntry> read_passwd(const std::string& rootfs) {
    std::vector<PasswdEntry> out;
    std::istringstream in(read_in_rootfs(rootfs, "etc/passwd"));
    std::string line;
    while (std::getline(in, line)) {
        const auto f = colon_fields(line);
        if (f.size() < 4) continue;
        const auto uid = parse_u32(f[2]), gid = parse_u32(f[3]);
        if (!uid || !gid) continue;  // malformed or out of range: not a usable entry
        out.push_back({f[0], *uid, *gid, f.size() > 5 ? f[5] : "/"});
    }
    return out;
}
// name:x:gid:members lines.
struct GroupEntry {
    std::string name;
    std::uint32_t gid = 0;
    std::vector<std::string> members;
};
std::vector<GroupEntry> read_group(const std::string& rootfs) {
    std::vector<GroupEntry> out;
    std::istringstream in(read_in_rootfs(rootfs, "etc/group"));
    std::string line;
    while (std::getline(in, line)) {
        const auto f = colon_fields(line);
        if (f.size() < 3) continue;
        const auto gid = parse_u32(f[2]);
        if (!gid) continue;
        GroupEntry g{f[0], *gid, {}};
        if (f.size() > 3) {
            std::stringstream ms(f[3]);
            std::string part;
            while (std::getline(ms, part, ','))
                if (!part.empty()) g.members.push_back(part);
        }
        out.push_back(std::move(g));
    }
    return out;
}

json bind_mount(const std::string& dest, const std::string& src, bool ro,
          const std::string& propagation = "rprivate") {
    json opts = json::array({"rbind", propagation});
    opts.push_back(ro ? "ro" : "rw");
    opts.push_back("nosuid");
    opts.push_back("nodev");
    return {{"destination", dest}, {"type", "bind"}, {"source", src}, {"options", opts}};
}

}  // namespace

json to_json(const ContainerRecord& r) {
    const auto& c = r.config;
    json mounts = json::array();
    for (const auto& m : c.mounts)
        mounts.push_back({{"container_path", m.container_path}, {"host_path", m.host_path},
                          {"readonly", m.readonly}, {"propagation", static_cast<int>(m.propagation)}});
    json devices = json::array();
    for (const auto& d : c.devices)
        devices.push_back({{"container_path", d.container_path}, {"host_path", d.host_path},
                           {"permissions", d.permissions}});
    json envs = json::array();
    for (const auto& [k, v] : c.envs) envs.push_back({k, v});
    json config = {
        {"name", c.metadata.name}, {"attempt", c.metadata.attempt}, {"image", c.image},
        {"command", c.command}, {"args", c.args}, {"working_dir", c.working_dir}, {"envs", envs},
        {"mounts", mounts}, {"devices", devices}, {"labels", c.labels}, {"annotations", c.annotations},
        {"log_path", c.log_path}, {"stdin", c.stdin}, {"stdin_once", c.stdin_once}, {"tty", c.tty},
        {"pid_mode", static_cast<int>(c.pid)}, {"pid_target", c.pid_target},
        {"privileged", c.privileged}, {"readonly_rootfs", c.readonly_rootfs},
        {"seccomp", {{"kind", static_cast<int>(c.seccomp.kind)}, {"localhost", c.seccomp.localhost}}},
        {"resources",
         {{"cpu_period", c.resources.cpu_period}, {"cpu_quota", c.resources.cpu_quota},
          {"cpu_shares", c.resources.cpu_shares}, {"memory_limit", c.resources.memory_limit},
          {"oom_score_adj", c.resources.oom_score_adj}, {"cpuset_cpus", c.resources.cpuset_cpus},
          {"cpuset_mems", c.resources.cpuset_mems}, {"memory_swap_limit", c.resources.memory_swap_limit},
          {"hugepage_limits", c.resources.hugepage_limits}, {"unified", c.resources.unified}}}};
    return {{"id", r.id}, {"pod_id", r.pod_id}, {"config", config}, {"state", static_cast<int>(r.state)},
            {"creating", r.creating}, {"image_id", r.image_id}, {"image_ref", r.image_ref},
            {"runtime_handler", r.runtime_handler}, {"runtime_path", r.runtime_path},
            {"runtime_root", r.runtime_root}, {"slice", r.slice}, {"bundle", r.bundle},
            {"rootfs", r.rootfs}, {"log_path", r.log_path}, {"pid", r.pid},
            {"monitor_pid", r.monitor_pid}, {"stop_signal", r.stop_signal},
            {"created_at", r.created_at}, {"started_at", r.started_at},
            {"finished_at", r.finished_at}, {"exit_code", r.exit_code}, {"oom_killed", r.oom_killed},
            {"reason", r.reason}, {"message", r.message}, {"pod_name", r.pod_name},
            {"pod_namespace", r.pod_namespace}, {"pod_uid", r.pod_uid}};
}

ContainerRecord container_from_json(const json& j) {
    try {
        ContainerRecord r;
        r.id = j.at("id").get<std::string>();
        r.pod_id = j.at("pod_id").get<std::string>();
        const auto& c = j.at("config");
        auto& o = r.config;
        o.metadata.name = c.at("name").get<std::string>();
        o.metadata.attempt = c.at("attempt").get<std::uint32_t>();
        o.image = c.at("image").get<std::string>();
        o.command = c.at("command").get<std::vector<std::string>>();
        o.args = c.at("args").get<std::vector<std::string>>();
        o.working_dir = c.at("working_dir").get<std::string>();
        for (const auto& e : c.at("envs")) o.envs.emplace_back(e.at(0).get<std::string>(), e.at(1).get<std::string>());
        for (const auto& m : c.at("mounts"))
            o.mounts.push_back({m.at("container_path").get<std::string>(), m.at("host_path").get<std::string>(),
                                m.at("readonly").get<bool>(), static_cast<Propagation>(m.at("propagation").get<int>())});
        for (const auto& d : c.at("devices"))
            o.devices.push_back({d.at("container_path").get<std::string>(), d.at("host_path").get<std::string>(),
                                 d.at("permissions").get<std::string>()});
        o.labels = c.at("labels").get<std::map<std::string, std::string>>();
        o.annotations = c.at("annotations").get<std::map<std::string, std::string>>();
        o.log_path = c.at("log_path").get<std::string>();
        o.stdin = c.at("stdin").get<bool>();
        o.stdin_once = c.at("stdin_once").get<bool>();
        o.tty = c.at("tty").get<bool>();
        // Records from before PID modes were kept had CONTAINER.
        o.pid = static_cast<NamespaceMode>(c.value("pid_mode", static_cast<int>(NamespaceMode::Container)));
        o.pid_target = c.value("pid_target", "");
        o.privileged = c.at("privileged").get<bool>();
        o.readonly_rootfs = c.at("readonly_rootfs").get<bool>();
        if (c.contains("seccomp"))  // records of an older crisd have none
            o.seccomp = {static_cast<SeccompKind>(c["seccomp"].at("kind").get<int>()),
                         c["seccomp"].at("localhost").get<std::string>()};
        const auto& res = c.at("resources");
        o.resources.cpu_period = res.at("cpu_period").get<std::int64_t>();
        o.resources.cpu_quota = res.at("cpu_quota").get<std::int64_t>();
        o.resources.cpu_shares = res.at("cpu_shares").get<std::int64_t>();
        o.resources.memory_limit = res.at("memory_limit").get<std::int64_t>();
        o.resources.oom_score_adj = res.at("oom_score_adj").get<std::int64_t>();
        o.resources.cpuset_cpus = res.at("cpuset_cpus").get<std::string>();
        o.resources.cpuset_mems = res.at("cpuset_mems").get<std::string>();
        // Not in the records of an older crisd.
        o.resources.memory_swap_limit = res.value("memory_swap_limit", std::int64_t{0});
        if (res.contains("hugepage_limits"))
            o.resources.hugepage_limits = res["hugepage_limits"].get<std::map<std::string, std::uint64_t>>();
        if (res.contains("unified"))
            o.resources.unified = res["unified"].get<std::map<std::string, std::string>>();
        r.state = static_cast<ContainerState>(j.at("state").get<int>());
        r.creating = j.at("creating").get<bool>();
        r.image_id = j.at("image_id").get<std::string>();
        r.image_ref = j.at("image_ref").get<std::string>();
        r.runtime_handler = j.at("runtime_handler").get<std::string>();
        r.runtime_path = j.at("runtime_path").get<std::string>();
        r.runtime_root = j.at("runtime_root").get<std::string>();
        r.slice = j.at("slice").get<std::string>();
        r.bundle = j.at("bundle").get<std::string>();
        r.rootfs = j.at("rootfs").get<std::string>();
        r.log_path = j.at("log_path").get<std::string>();
        r.pid = j.at("pid").get<std::int32_t>();
        r.monitor_pid = j.at("monitor_pid").get<std::int32_t>();
        r.stop_signal = j.at("stop_signal").get<int>();
        r.created_at = j.at("created_at").get<std::int64_t>();
        r.started_at = j.at("started_at").get<std::int64_t>();
        r.finished_at = j.at("finished_at").get<std::int64_t>();
        r.exit_code = j.at("exit_code").get<int>();
        r.oom_killed = j.at("oom_killed").get<bool>();
        r.reason = j.at("reason").get<std::string>();
        r.message = j.at("message").get<std::string>();
        r.pod_name = j.at("pod_name").get<std::string>();
        r.pod_namespace = j.at("pod_namespace").get<std::string>();
        r.pod_uid = j.at("pod_uid").get<std::string>();
        return r;
    } catch (const json::exception& e) {
        throw Error(Code::DataLoss, std::string("container record: ") + e.what());
    }
}

bool matches(const ContainerFilter& f, const ContainerRecord& r) {
    if (!f.id.empty() && r.id.rfind(f.id, 0) != 0) return false;
    if (!f.pod_id.empty() && r.pod_id.rfind(f.pod_id, 0) != 0) return false;
    if (f.state && *f.state != r.state) return false;
    for (const auto& [k, v] : f.label_selector) {
        auto it = r.config.labels.find(k);
        if (it == r.config.labels.end() || it->second != v) return false;
    }
    return true;
}

ImageConfig parse_image_config(const std::string& config_json) {
    ImageConfig out;
    if (config_json.empty()) return out;
    const auto j = json::parse(config_json, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(Code::DataLoss, "the image's config is not JSON");
    const auto it = j.find("config");
    if (it == j.end() || !it->is_object()) return out;
    const auto& c = *it;
    if (c.contains("Entrypoint")) out.entrypoint = strings(c["Entrypoint"]);
    if (c.contains("Cmd")) out.cmd = strings(c["Cmd"]);
    if (c.contains("Env")) out.env = strings(c["Env"]);
    if (c.contains("WorkingDir") && c["WorkingDir"].is_string()) out.working_dir = c["WorkingDir"];
    if (c.contains("User") && c["User"].is_string()) out.user = c["User"];
    if (c.contains("StopSignal") && c["StopSignal"].is_string()) out.stop_signal = c["StopSignal"];
    return out;
}

std::vector<std::string> process_args(const ContainerConfig& c, const ImageConfig& image) {
    std::vector<std::string> out;
    if (!c.command.empty()) {
        out = c.command;
        out.insert(out.end(), c.args.begin(), c.args.end());
    } else {
        out = image.entrypoint;
        const auto& args = c.args.empty() ? image.cmd : c.args;
        out.insert(out.end(), args.begin(), args.end());
    }
    if (out.empty())
        throw Error(Code::InvalidArgument, "container " + c.metadata.name +
                                               ": no command: neither the CRI config nor the image " +
                                               c.image + " gives one");
    return out;
}

int signal_number(const std::string& name) {
    if (const auto n = parse_u32(name); n && *n > 0 && *n < 65) return static_cast<int>(*n);
    std::string s = name;
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    static const std::pair<const char*, int> kSignals[] = {
        {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
        {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"PWR", SIGPWR}, {"WINCH", SIGWINCH}, {"STOP", SIGSTOP},
        {"CONT", SIGCONT}, {"ABRT", SIGABRT}, {"ALRM", SIGALRM}};
    for (const auto& [n, v] : kSignals)
        if (s == n) return v;
    if (s.rfind("RTMIN+", 0) == 0)
        if (const auto n = parse_u32(s.substr(6)); n && *n <= static_cast<std::uint32_t>(SIGRTMAX - SIGRTMIN))
            return SIGRTMIN + static_cast<int>(*n);
    throw Error(Code::InvalidArgument, "unknown signal \"" + name + "\"");
}

ResolvedUser resolve_user(const ContainerConfig& c, const ImageConfig& image, const std::string& rootfs) {
    ResolvedUser u;
    std::string user_part, group_part;
    std::optional<std::uint32_t> uid;
    std::string username;
    if (c.run_as_user) {
        uid = static_cast<std::uint32_t>(*c.run_as_user);
    } else if (!c.run_as_username.empty()) {
        username = c.run_as_username;
    } else if (!image.user.empty()) {
        const auto colon = image.user.find(':');
        user_part = image.user.substr(0, colon);
        if (colon != std::string::npos) group_part = image.user.substr(colon + 1);
        if (all_digits(user_part)) {
            const auto n = parse_u32(user_part);
            if (!n) throw Error(Code::InvalidArgument, "the image's user " + image.user + " is out of range");
            uid = *n;
        } else
            username = user_part;
    } else {
        uid = 0;
    }
    const auto passwd = read_passwd(rootfs);
    bool found = false;
    if (uid) {
        u.uid = *uid;
        u.gid = *uid == 0 ? 0 : *uid;
        for (const auto& p : passwd)
            if (p.uid == *uid) {
                u.gid = p.gid;
                u.home = p.home;
                username = p.name;
                found = true;
                break;
            }
        if (!found) u.gid = 0;  // what runc and CRI-O do for an unknown uid
    } else {
        for (const auto& p : passwd)
            if (p.name == username) {
                u.uid = p.uid;
                u.gid = p.gid;
                u.home = p.home;
                found = true;
                break;
            }
        if (!found)
            throw Error(Code::NotFound, "user \"" + username + "\" is not in the image's /etc/passwd");
    }
    const auto groups = read_group(rootfs);
    if (c.run_as_group) {
        u.gid = static_cast<std::uint32_t>(*c.run_as_group);
    } else if (!group_part.empty()) {
        if (all_digits(group_part)) {
            const auto n = parse_u32(group_part);
            if (!n) throw Error(Code::InvalidArgument, "the group " + group_part + " is out of range");
            u.gid = *n;
        } else {
            bool g_found = false;
            for (const auto& g : groups)
                if (g.name == group_part) {
                    u.gid = g.gid;
                    g_found = true;
                }
            if (!g_found)
                throw Error(Code::NotFound, "group \"" + group_part + "\" is not in the image's /etc/group");
        }
    }
    u.additional_gids.push_back(u.gid);  // as `id` shows it: the primary group first
    if (!username.empty())
        for (const auto& g : groups)
            for (const auto& m : g.members)
                if (m == username && g.gid != u.gid) u.additional_gids.push_back(g.gid);
    for (auto g : c.supplemental_groups) u.additional_gids.push_back(static_cast<std::uint32_t>(g));
    return u;
}

std::set<std::string> bounding_set() {
    std::set<std::string> out;
    std::ifstream in("/proc/self/status");
    std::string line;
    std::uint64_t mask = 0;
    while (std::getline(in, line))
        if (line.rfind("CapBnd:", 0) == 0) mask = std::stoull(line.substr(7), nullptr, 16);
    for (size_t i = 0; i < std::size(kAllCaps); ++i)
        if (mask & (std::uint64_t{1} << i)) out.insert(kAllCaps[i]);
    return out;
}

std::vector<std::string> capabilities(const ContainerConfig& c, const std::set<std::string>& bounding) {
    std::set<std::string> caps;
    bool all = c.privileged;
    for (const auto& a : c.add_capabilities)
        if (cap_name(a) == "CAP_ALL") all = true;
    if (all) {
        caps = bounding;
    } else {
        for (const auto* d : kDefaultCaps) caps.insert(d);
        for (const auto& a : c.add_capabilities) caps.insert(cap_name(a));
    }
    // A privileged container keeps the whole bounding set whatever it drops,
    // as in CRI-O and containerd.
    for (const auto& d : c.privileged ? std::vector<std::string>{} : c.drop_capabilities) {
        if (cap_name(d) == "CAP_ALL") {
            caps.clear();
            for (const auto& a : c.add_capabilities)  // drop ALL, then add: the added ones stay
                if (cap_name(a) != "CAP_ALL") caps.insert(cap_name(a));
            break;
        }
        caps.erase(cap_name(d));
    }
    std::vector<std::string> out;
    for (const auto& cap : caps) {
        bool known = false;
        for (const auto* k : kAllCaps) known = known || cap == k;
        if (!known) throw Error(Code::InvalidArgument, "unknown capability " + cap);
        if (bounding.count(cap)) out.push_back(cap);
    }
    return out;
}

CgroupFeatures cgroup_features(const std::string& cgroup_root, const std::string& hugepages_dir) {
    CgroupFeatures f;
    struct statfs sfs{};
    f.unified = ::statfs(cgroup_root.c_str(), &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;
    struct stat st{};
    if (f.unified) {
        const auto controllers = read_file_if_exists(cgroup_root + "/cgroup.controllers").value_or("");
        std::istringstream in(controllers);
        std::string c;
        while (in >> c) f.hugetlb = f.hugetlb || c == "hugetlb";
        // memory.swap.max exists in every non-root cgroup when swap is accounted.
        const auto self = read_file_if_exists("/proc/self/cgroup").value_or("");
        const auto pos = self.find("0::");
        if (pos != std::string::npos) {
            std::string path = self.substr(pos + 3);
            path = path.substr(0, path.find('\n'));
            f.swap = ::stat((cgroup_root + path + "/memory.swap.max").c_str(), &st) == 0;
        }
    } else {
        f.hugetlb = ::stat((cgroup_root + "/hugetlb").c_str(), &st) == 0;
        f.swap = ::stat((cgroup_root + "/memory/memory.memsw.limit_in_bytes").c_str(), &st) == 0;
    }
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(hugepages_dir, ec)) {
        const auto name = e.path().filename().string();  // hugepages-2048kB
        if (name.rfind("hugepages-", 0) != 0 || name.size() < 13 || name.substr(name.size() - 2) != "kB") continue;
        const auto digits = name.substr(10, name.size() - 12);
        if (!all_digits(digits)) continue;
        const auto kb = std::stoull(digits);
        f.hugepage_sizes.insert(kb % (1024 * 1024) == 0 ? std::to_string(kb / 1024 / 1024) + "GB"
                                : kb % 1024 == 0        ? std::to_string(kb / 1024) + "MB"
                                                        : std::to_string(kb) + "KB");
    }
    return f;
}

void check_resources(const ContainerResources& r, const CgroupFeatures& node) {
    if (!r.unified.empty() && !node.unified)
        throw Error(Code::InvalidArgument,
                    "unified cgroup resources (" + r.unified.begin()->first +
                        ", ...) need a cgroup v2 node; this node has cgroup v1 controllers");
    for (const auto& [k, v] : r.unified)
        if (k.empty() || k.find('/') != std::string::npos || k.find('.') == std::string::npos)
            throw Error(Code::InvalidArgument, "unified resource \"" + k + "\" is not a cgroup file name");
    if (r.memory_swap_limit > 0 && r.memory_limit > 0 && r.memory_swap_limit < r.memory_limit)
        throw Error(Code::InvalidArgument, "memory_swap_limit_in_bytes " + std::to_string(r.memory_swap_limit) +
                                               " is below memory_limit_in_bytes " + std::to_string(r.memory_limit) +
                                               " (it is memory plus swap)");
    for (const auto& [size, limit] : r.hugepage_limits) {
        const auto unit = size.size() > 2 ? size.substr(size.size() - 2) : "";
        if ((unit != "KB" && unit != "MB" && unit != "GB") || !all_digits(size.substr(0, size.size() - 2)))
            throw Error(Code::InvalidArgument, "hugepage size \"" + size + "\" is not like 2MB or 1GB");
        if (node.hugetlb && !node.hugepage_sizes.count(size))
            throw Error(Code::InvalidArgument, "hugepage size " + size + " is not one of this node's");
    }
}

std::optional<std::string> pid_namespace(const ContainerConfig& c, const PodRecord& pod,
                                         const ContainerRecord* target) {
    if (pod.config.host_pid() || c.pid == NamespaceMode::Node) return std::nullopt;
    switch (c.pid) {
    case NamespaceMode::Pod:
        if (!pod.infra.present())
            throw Error(Code::FailedPrecondition,
                        "container " + c.metadata.name + " asks for its pod's PID namespace, but pod " + pod.id +
                            " has none: only a pod with PID mode POD shares one");
        if (pod.infra.pid <= 0)
            throw Error(Code::FailedPrecondition,
                        "the infra container of pod " + pod.id + " does not run; its PID namespace is gone");
        return pod.infra.pid_namespace();
    case NamespaceMode::Target:
        if (c.pid_target.empty())
            throw Error(Code::InvalidArgument,
                        "container " + c.metadata.name + ": PID namespace mode TARGET needs a target_id");
        if (!target) throw Error(Code::NotFound, "target container " + c.pid_target + " not found");
        if (target->pod_id != pod.id)
            throw Error(Code::InvalidArgument, "target container " + target->id + " is in another pod (" +
                                                   target->pod_id + ")");
        if ((target->state != ContainerState::Created && target->state != ContainerState::Running) ||
            target->pid <= 0)
            throw Error(Code::FailedPrecondition,
                        "target container " + target->id + " does not run; its PID namespace is gone");
        return "/proc/" + std::to_string(target->pid) + "/ns/pid";
    default:
        return "";
    }
}

json oci_spec(const SpecInputs& in) {
    const auto& r = *in.record;
    const auto& c = r.config;
    const auto& pod = *in.pod;

    // Environment: the image's, then the CRI's over it.
    std::vector<std::pair<std::string, std::string>> env;
    auto set_env = [&](const std::string& k, const std::string& v) {
        for (auto& e : env)
            if (e.first == k) {
                e.second = v;
                return;
            }
        env.emplace_back(k, v);
    };
    set_env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (const auto& e : in.image.env) {
        const auto eq = e.find('=');
        set_env(e.substr(0, eq), eq == std::string::npos ? "" : e.substr(eq + 1));
    }
    set_env("HOSTNAME", pod.config.hostname.empty() ? pod.config.metadata.name : pod.config.hostname);
    for (const auto& [k, v] : c.envs) set_env(k, v);
    bool has_home = false;
    for (const auto& e : env) has_home = has_home || e.first == "HOME";
    if (!has_home) set_env("HOME", in.user.home);
    json env_j = json::array();
    for (const auto& [k, v] : env) env_j.push_back(k + "=" + v);

    std::string cwd = !c.working_dir.empty() ? c.working_dir
                      : !in.image.working_dir.empty() ? in.image.working_dir : "/";

    json caps = in.caps;
    json process = {
        {"terminal", c.tty},
        {"user", {{"uid", in.user.uid}, {"gid", in.user.gid}}},
        {"args", in.args},
        {"env", env_j},
        {"cwd", cwd},
        {"capabilities",
         {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
        {"noNewPrivileges", c.no_new_privs},
    };
    if (in.user.uid == 0) process["capabilities"]["inheritable"] = json::array();
    if (!in.user.additional_gids.empty()) process["user"]["additionalGids"] = in.user.additional_gids;
    // oom_score_adj: only values >= 0 (see ContainerManager).
    if (c.resources.oom_score_adj > 0) process["oomScoreAdj"] = c.resources.oom_score_adj;

    json mounts = json::array({
        {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}, {"options", {"nosuid", "noexec", "nodev"}}},
        {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
         {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
        {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
         {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}}},
        {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"},
         {"options", {"nosuid", "noexec", "nodev"}}},
        {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"},
         {"options", {"nosuid", "noexec", "nodev", c.privileged ? "rw" : "ro"}}},
        {{"destination", "/sys/fs/cgroup"}, {"type", "cgroup"}, {"source", "cgroup"},
         {"options", {"nosuid", "noexec", "nodev", "relatime", c.privileged ? "rw" : "ro"}}},
    });
    if (!pod.shm.empty())
        mounts.push_back(bind_mount("/dev/shm", pod.shm, false));
    else
        mounts.push_back({{"destination", "/dev/shm"}, {"type", "bind"}, {"source", "/dev/shm"},
                          {"options", {"rbind", "rprivate", "rw"}}});
    std::set<std::string> cri_dests;
    for (const auto& m : c.mounts) cri_dests.insert(m.container_path);
    struct stat st{};
    if (!cri_dests.count("/etc/resolv.conf") && ::stat(pod.resolv_conf().c_str(), &st) == 0)
        mounts.push_back(bind_mount("/etc/resolv.conf", pod.resolv_conf(), c.readonly_rootfs));
    if (!cri_dests.count("/etc/hosts") && ::stat(pod.hosts().c_str(), &st) == 0)
        mounts.push_back(bind_mount("/etc/hosts", pod.hosts(), c.readonly_rootfs));
    if (!cri_dests.count("/etc/hostname") && ::stat(pod.hostname_file().c_str(), &st) == 0)
        mounts.push_back(bind_mount("/etc/hostname", pod.hostname_file(), c.readonly_rootfs));
    for (const auto& m : c.mounts) {
        if (m.container_path.empty() || m.container_path[0] != '/')
            throw Error(Code::InvalidArgument, "mount destination \"" + m.container_path + "\" is not absolute");
        if (::stat(m.host_path.c_str(), &st) != 0)
            throw Error(Code::NotFound, "mount source " + m.host_path + " for " + m.container_path +
                                            " does not exist", errno);
        const char* prop = m.propagation == Propagation::Bidirectional   ? "rshared"
                           : m.propagation == Propagation::HostToContainer ? "rslave"
                                                                           : "rprivate";
        auto b = bind_mount(m.container_path, m.host_path, m.readonly, prop);
        b["options"] = json::array({"rbind", prop, m.readonly ? "ro" : "rw"});
        mounts.push_back(b);
    }

    json namespaces = json::array({{{"type", "mount"}}});
    if (!pod.netns.empty()) namespaces.push_back({{"type", "network"}, {"path", pod.netns}});
    if (!pod.ipcns.empty()) namespaces.push_back({{"type", "ipc"}, {"path", pod.ipcns}});
    if (!pod.utsns.empty()) namespaces.push_back({{"type", "uts"}, {"path", pod.utsns}});
    if (const auto pidns = pid_namespace(c, pod, in.pid_target)) {
        if (pidns->empty())
            namespaces.push_back({{"type", "pid"}});
        else
            namespaces.push_back({{"type", "pid"}, {"path", *pidns}});
    }

    json resources = json::object();
    json dev_rules = json::array({{{"allow", false}, {"access", "rwm"}}});
    json devices = json::array();
    for (const auto& d : c.devices) {
        struct stat ds{};
        if (::stat(d.host_path.c_str(), &ds) != 0)
            throw Error(Code::NotFound, "device " + d.host_path + " does not exist", errno);
        const bool chr = S_ISCHR(ds.st_mode);
        if (!chr && !S_ISBLK(ds.st_mode))
            throw Error(Code::InvalidArgument, d.host_path + " is not a device");
        const auto major = static_cast<std::int64_t>(::major(ds.st_rdev));
        const auto minor = static_cast<std::int64_t>(::minor(ds.st_rdev));
        devices.push_back(json{{"path", d.container_path}, {"type", chr ? "c" : "b"}, {"major", major},
                           {"minor", minor}, {"fileMode", static_cast<unsigned>(ds.st_mode & 07777)}, {"uid", 0}, {"gid", 0}});
        dev_rules.push_back(json{{"allow", true}, {"type", chr ? "c" : "b"}, {"major", major}, {"minor", minor},
                             {"access", d.permissions.empty() ? "rwm" : d.permissions}});
    }
    if (c.privileged) dev_rules = json::array({{{"allow", true}, {"access", "rwm"}}});
    resources["devices"] = dev_rules;
    const auto& res = c.resources;
    json memory = json::object();
    if (res.memory_limit > 0) memory["limit"] = res.memory_limit;
    // memory + swap; without a swap limit no swap (memory.swap = the limit),
    // as CRI-O and containerd do. Left out where the node does not account swap.
    if (in.cgroups.swap) {
        if (res.memory_swap_limit != 0)
            memory["swap"] = res.memory_swap_limit;
        else if (res.memory_limit > 0)
            memory["swap"] = res.memory_limit;
    }
    if (!memory.empty()) resources["memory"] = memory;
    if (in.cgroups.hugetlb && !res.hugepage_limits.empty()) {
        json hp = json::array();
        for (const auto& [size, limit] : res.hugepage_limits) hp.push_back({{"pageSize", size}, {"limit", limit}});
        resources["hugepageLimits"] = hp;
    }
    if (in.cgroups.unified && !res.unified.empty()) resources["unified"] = res.unified;
    json cpu = json::object();
    if (res.cpu_shares > 0) cpu["shares"] = res.cpu_shares;
    if (res.cpu_quota > 0) cpu["quota"] = res.cpu_quota;
    if (res.cpu_period > 0) cpu["period"] = res.cpu_period;
    if (!res.cpuset_cpus.empty()) cpu["cpus"] = res.cpuset_cpus;
    if (!res.cpuset_mems.empty()) cpu["mems"] = res.cpuset_mems;
    if (!cpu.empty()) resources["cpu"] = cpu;

    json linux_j = {
        {"namespaces", namespaces},
        {"resources", resources},
        // runc/crun's systemd driver: <slice>:<prefix>:<name> is the scope
        // <prefix>-<name>.scope in <slice>, limits as its unit properties.
        {"cgroupsPath", r.slice + ":crisd:" + r.id},
    };
    if (!devices.empty()) linux_j["devices"] = devices;
    if (in.seccomp && !c.privileged) linux_j["seccomp"] = *in.seccomp;
    if (!c.privileged) {
        json masked = json::array(), ro = json::array();
        if (c.masked_paths.empty())
            for (const auto& p : default_masked_paths()) masked.push_back(p);
        else
            for (const auto& p : c.masked_paths) masked.push_back(p);
        if (c.readonly_paths.empty())
            for (const auto& p : default_readonly_paths()) ro.push_back(p);
        else
            for (const auto& p : c.readonly_paths) ro.push_back(p);
        linux_j["maskedPaths"] = masked;
        linux_j["readonlyPaths"] = ro;
    }
    json annotations = c.annotations;
    annotations["io.kubernetes.cri.container-name"] = c.metadata.name;
    annotations["io.kubernetes.cri.sandbox-id"] = pod.id;

    return {
        {"ociVersion", "1.0.2"},
        {"process", process},
        {"root", {{"path", r.rootfs}, {"readonly", c.readonly_rootfs}}},
        {"mounts", mounts},
        {"annotations", annotations},
        {"linux", linux_j},
    };
}

}  // namespace crisd::runtime
