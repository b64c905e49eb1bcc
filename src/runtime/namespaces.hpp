// Pod namespaces without an infra process: a short-lived thread unshares the
// network, IPC and UTS namespaces, sets the hostname and the pod's sysctls
// inside them, and bind-mounts /proc/<tid>/ns/<x> onto files that keep them
// alive (<runroot>/ns/<pod id>/{net,ipc,uts}). A container joins them by path
// (the OCI config's linux.namespaces[].path). Also the pod's /dev/shm tmpfs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace crisd::runtime {

struct NamespaceSpec {
    std::string dir;  // where the files go; created
    bool net = false;
    bool ipc = false;
    bool uts = false;
    std::string hostname;  // set in the new UTS namespace
    // Dotted names (see classify_sysctl) with their values, written inside
    // the new namespaces: net.* needs `net`, the IPC ones `ipc`.
    std::vector<std::pair<std::string, std::string>> sysctls;
};

struct PodNamespaces {
    std::string net, ipc, uts;  // "" for one not asked for
};

// Creates the namespaces and their files. On failure nothing is left (no
// mount, no file) and the error says what failed: InvalidArgument for a
// sysctl the kernel does not know or refuses.
PodNamespaces create_namespaces(const NamespaceSpec& spec);

// Unmounts (lazily) and deletes a namespace file or a mount point.
// Idempotent: a path that is missing or not a mount point is fine.
void remove_mount(const std::string& path, bool directory);

// Mounts a tmpfs for /dev/shm at `path` (created) with `size` bytes.
void mount_shm(const std::string& path, std::int64_t size);

}  // namespace crisd::runtime
