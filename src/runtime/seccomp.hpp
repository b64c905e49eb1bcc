// Seccomp for containers: which profile a container asked for (the CRI's
// SecurityProfile or the deprecated seccomp_profile_path string), and the
// OCI linux.seccomp object made from a profile file for one container.
//
// Profile files come in two formats and both are accepted: the containers
// (Docker) format of /usr/share/containers/seccomp.json (archMap, syscalls
// with includes/excludes by capability, architecture and kernel version) and
// the OCI format (architectures, syscalls with names/action/args). The
// conversion keeps what applies to this container, as containers/common
// (CRI-O, Podman) does: a rule whose includes name capabilities is kept only
// when the container has all of them, one whose excludes name a capability it
// has is dropped; likewise for the node's architecture and kernel.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace crisd::runtime {

enum class SeccompKind : int { Unconfined = 0, RuntimeDefault = 1, Localhost = 2 };

struct SeccompRequest {
    SeccompKind kind = SeccompKind::Unconfined;
    std::string localhost;  // absolute path of a Localhost profile
    bool operator==(const SeccompRequest&) const = default;
};

// The deprecated seccomp_profile_path: "" and "unconfined" (Kubernetes: no
// profile), "runtime/default" and "docker/default", "localhost/<absolute
// path>". InvalidArgument for anything else.
SeccompRequest seccomp_from_path(const std::string& path);
// A Localhost profile: InvalidArgument unless `ref` is an absolute path.
SeccompRequest seccomp_localhost(const std::string& ref);
std::string to_string(const SeccompRequest& r);  // "runtime/default", "localhost/<path>", "unconfined"

// What the rules of a profile are filtered by.
struct SeccompTarget {
    std::string arch;                // libseccomp's name of the native arch: "amd64", "arm64", ...
    std::set<std::string> caps;      // the container's bounding set ("CAP_SYS_ADMIN", ...)
    std::pair<int, int> kernel{0, 0};  // major, minor
};
// The node's arch (uname -m mapped to libseccomp's names) and kernel version.
std::string seccomp_native_arch();
std::pair<int, int> kernel_version();

// A profile file's text as JSON; InvalidArgument naming `origin` when it is not.
nlohmann::json parse_seccomp_profile(const std::string& text, const std::string& origin);
// The OCI linux.seccomp object of `profile` (either format) for `target`.
// InvalidArgument naming `origin` for a profile that is not valid.
nlohmann::json seccomp_to_oci(const nlohmann::json& profile, const SeccompTarget& target,
                              const std::string& origin);

// The profiles of a node: the RuntimeDefault one from `default_path`
// (crisd.runtime.seccomp_profile), parsed once and read again only when the
// file changed, and Localhost files, read for each container.
class SeccompProfiles {
public:
    explicit SeccompProfiles(std::string default_path);

    // linux.seccomp for a container, or nothing (Unconfined, or privileged).
    // Localhost: InvalidArgument for a file that is missing, unreadable or not
    // a valid profile. RuntimeDefault: FailedPrecondition when the default
    // file is. Both name the file.
    std::optional<nlohmann::json> for_container(const SeccompRequest& request, bool privileged,
                                                const std::set<std::string>& caps);
    const std::string& default_path() const { return default_path_; }
    // How often the default file was parsed (the cache's misses).
    std::uint64_t default_reads() const {
        std::lock_guard lock(mu_);
        return reads_;
    }

private:
    std::shared_ptr<const nlohmann::json> default_profile();

    const std::string default_path_;
    const std::string arch_;
    const std::pair<int, int> kernel_;
    mutable std::mutex mu_;  // guards the cache
    struct Stamp {
        std::uint64_t dev = 0, ino = 0, size = 0;
        std::int64_t mtime_ns = 0;
        bool operator==(const Stamp&) const = default;
    };
    std::optional<Stamp> stamp_;
    std::shared_ptr<const nlohmann::json> default_;
    std::uint64_t reads_ = 0;
};

}  // namespace crisd::runtime
