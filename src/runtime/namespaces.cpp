#include "runtime/namespaces.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "runtime/pod.hpp"

namespace crisd::runtime {
namespace {

// /proc/sys is read-only in some containers (systemd-nspawn, a node in a
// container) even for root. The sysctls crisd writes belong to the pod's new
// namespaces, not the node's, so the calling thread takes a mount namespace
// of its own (it ends with the thread) and remounts /proc/sys read-write there.
void make_proc_sys_writable() {
    if (::unshare(CLONE_NEWNS) != 0) throw_errno("unshare of a mount namespace for /proc/sys");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
        throw_errno("making the sysctl thread's mounts private");
    if (::mount(nullptr, "/proc/sys", nullptr, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                nullptr) != 0)
        throw_errno("remounting /proc/sys read-write for the pod's sysctls");
}

void write_sysctl(const std::string& name, const std::string& value, bool& remounted) {
    const std::string path = sysctl_path(name);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd && errno == EROFS && !remounted) {
        remounted = true;
        make_proc_sys_writable();
        fd.reset(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    }
    if (!fd) {
        const int err = errno;
        if (err == ENOENT)
            throw Error(Code::InvalidArgument, "sysctl \"" + name + "\" does not exist in the pod's namespace", err);
        throw sys_error("sysctl \"" + name + "\": opening " + path, err);
    }
    const ssize_t w = ::write(fd.get(), value.data(), value.size());
    if (w < 0 || static_cast<size_t>(w) != value.size()) {
        const int err = w < 0 ? errno : EIO;
        if (err == EINVAL || err == ERANGE)
            throw Error(Code::InvalidArgument,
                        "sysctl \"" + name + "\": the kernel refused the value \"" + value + "\"", err);
        throw sys_error("sysctl \"" + name + "\": writing \"" + value + "\"", err);
    }
}

// Bind-mounts the calling thread's namespace `kind` onto `target` (created).
void pin(const std::string& kind, const std::string& target) {
    UniqueFd fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
    if (!fd) throw_errno("creating " + target);
    fd.reset();
    const std::string source =
        "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/ns/" + kind;
    if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
        const int err = errno;
        ::unlink(target.c_str());
        throw_sys("bind-mounting " + source + " on " + target, err);
    }
}

}  // namespace

void remove_mount(const std::string& path, bool directory) {
    // A file may carry more than one mount if something mounted it twice.
    for (int i = 0; i < 8; ++i) {
        if (::umount2(path.c_str(), MNT_DETACH) == 0) continue;
        if (errno == EINVAL || errno == ENOENT) break;
        throw_errno("unmounting " + path);
    }
    const int r = directory ? ::rmdir(path.c_str()) : ::unlink(path.c_str());
    if (r != 0 && errno != ENOENT) throw_errno("removing " + path);
}

PodNamespaces create_namespaces(const NamespaceSpec& spec) {
    std::error_code ec;
    std::filesystem::create_directories(spec.dir, ec);
    if (ec) throw sys_error("creating " + spec.dir, ec.value());

    PodNamespaces out;
    std::exception_ptr error;
    // unshare() of these namespaces changes the calling thread only; the
    // thread ends once the namespaces are pinned by their bind mounts.
    std::thread worker([&] {
        try {
            int flags = 0;
            if (spec.net) flags |= CLONE_NEWNET;
            if (spec.ipc) flags |= CLONE_NEWIPC;
            if (spec.uts) flags |= CLONE_NEWUTS;
            if (flags == 0) return;
            if (::unshare(flags) != 0) throw_errno("unshare of the pod's namespaces");
            if (spec.uts && !spec.hostname.empty() &&
                ::sethostname(spec.hostname.data(), spec.hostname.size()) != 0)
                throw_errno("setting the hostname \"" + spec.hostname + "\"");
            // Pinned first: the bind mounts must land in crisd's mount
            // namespace, which a sysctl below may leave (for this thread).
            if (spec.net) {
                out.net = spec.dir + "/net";
                pin("net", out.net);
            }
            if (spec.ipc) {
                out.ipc = spec.dir + "/ipc";
                pin("ipc", out.ipc);
            }
            if (spec.uts) {
                out.uts = spec.dir + "/uts";
                pin("uts", out.uts);
            }
            bool remounted = false;
            for (const auto& [name, value] : spec.sysctls) write_sysctl(name, value, remounted);
        } catch (...) {
            error = std::current_exception();
        }
    });
    worker.join();
    if (error) {
        for (const auto* p : {&out.net, &out.ipc, &out.uts}) {
            if (p->empty()) continue;
            try {
                remove_mount(*p, false);
            } catch (const Error& e) {
                spdlog::warn("cleaning up after a failed namespace setup: {}", e.what());
            }
        }
        ::rmdir(spec.dir.c_str());
        std::rethrow_exception(error);
    }
    return out;
}

void mount_shm(const std::string& path, std::int64_t size) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("creating " + path);
    const std::string opts = "mode=1777,size=" + std::to_string(size);
    if (::mount("shm", path.c_str(), "tmpfs", MS_NOEXEC | MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
        const int err = errno;
        ::rmdir(path.c_str());
        throw_sys("mounting the pod's shm tmpfs on " + path, err);
    }
}

}  // namespace crisd::runtime
