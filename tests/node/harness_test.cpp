// The test node itself: what every other node test relies on. A failure here
// points at scripts/node or tests/images, not at crisd.
#include <gtest/gtest.h>

#include "node_test.hpp"

using namespace crisd::node;

namespace {

const char* const kImages[] = {
    "busybox:latest", "busybox:oci",      "busybox:zstd",     "plain:latest",
    "layers:latest",  "config:latest",    "multiarch:latest", "multiarch:docker",
    "big:latest",
};

}  // namespace

TEST(NodeHarness, SystemdRunsAsPid1) {
    EXPECT_EQ(must("cat /proc/1/comm"), "systemd\n");
    const auto state = sh("systemctl is-system-running").out;
    EXPECT_TRUE(state == "running\n" || state == "degraded\n") << state;
    EXPECT_EQ(sh("systemctl --failed --no-legend --plain").out, "") << "failed units in the node";
}

TEST(NodeHarness, CgroupControllersAreWritable) {
    for (const char* c : {"memory", "cpu", "pids", "cpuset", "devices", "freezer", "blkio"}) {
        const auto opts = must(std::string("findmnt -rn -o OPTIONS /sys/fs/cgroup/") + c);
        EXPECT_EQ(opts.rfind("rw,", 0), 0u) << c << ": " << opts;
    }
}

TEST(NodeHarness, RegistryServesEveryTestImage) {
    for (const char* image : kImages) {
        const auto r = sh(std::string("skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/") +
                          image);
        EXPECT_EQ(r.exit_code, 0) << image << ": " << r.out;
    }
}

TEST(NodeHarness, AuthRegistryWantsCredentials) {
    const std::string ref = "docker://127.0.0.1:5001/private/busybox:latest";
    const auto anonymous = sh("skopeo inspect --raw --tls-verify=false " + ref);
    EXPECT_NE(anonymous.exit_code, 0);
    EXPECT_NE(anonymous.out.find("unauthorized"), std::string::npos) << anonymous.out;
    EXPECT_EQ(sh("skopeo inspect --raw --tls-verify=false --creds crisd:crisd-test " + ref).exit_code, 0);
    EXPECT_NE(sh("skopeo inspect --raw --tls-verify=false --creds crisd:wrong " + ref).exit_code, 0);
}

// runc and crun run a container in the node with both cgroup drivers, and
// systemd enforces a memory limit on the container's scope (design.md).
class RuntimeInNode : public ::testing::TestWithParam<std::string> {};

TEST_P(RuntimeInNode, RunsABusyboxContainer) {
    const std::string rt = GetParam();
    const std::string dir = "/tmp/bundle-" + rt;
    must("rm -rf " + dir + " && mkdir -p " + dir + "/rootfs/bin && cp /bin/busybox " + dir +
         "/rootfs/bin/ && ln -s busybox " + dir + "/rootfs/bin/sh");
    must("cd " + dir + " && " + rt + " spec && sed -i 's/\"terminal\": true/\"terminal\": false/; "
         "s/\"sh\"/\"sh\", \"-c\", \"echo hello-from-$0\", \"" + rt + "\"/' config.json");
    const auto out = sh("cd " + dir + " && " + rt + " run test-" + rt + " < /dev/null");
    EXPECT_EQ(out.exit_code, 0) << out.out;
    EXPECT_NE(out.out.find("hello-from-" + rt), std::string::npos) << out.out;

    // The systemd cgroup driver: the container lands in a transient scope.
    const auto sd = sh("cd " + dir + " && " + rt + " --systemd-cgroup run test-sd-" + rt +
                       " < /dev/null");
    EXPECT_EQ(sd.exit_code, 0) << sd.out;
    EXPECT_NE(sd.out.find("hello-from-" + rt), std::string::npos) << sd.out;
    sh("rm -rf " + dir);
}

INSTANTIATE_TEST_SUITE_P(Runtimes, RuntimeInNode, ::testing::Values("runc", "crun"));

TEST(NodeHarness, SystemdEnforcesScopeLimits) {
    const auto r = sh("systemd-run --scope --quiet -p MemoryMax=64M -p CPUQuota=50% --unit=limits-check "
                      "sh -c 'cat /sys/fs/cgroup/memory/$(grep :memory: /proc/self/cgroup | cut -d: -f3)/memory.limit_in_bytes; "
                      "cat /sys/fs/cgroup/cpu/$(grep :cpu: /proc/self/cgroup | cut -d: -f3)/cpu.cfs_quota_us'");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "67108864\n50000\n");
}
