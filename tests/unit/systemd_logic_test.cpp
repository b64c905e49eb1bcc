// The pure part of src/systemd: slice names, property encoding, error mapping.
#include <algorithm>
#include <gtest/gtest.h>

#include <csignal>

#include "systemd/logic.hpp"
#include "error_code.hpp"

using namespace crisd;
using namespace crisd::systemd;

using crisd::test::code_of;

namespace {

std::optional<PropertyValue> find(const std::vector<Property>& props, const std::string& name) {
    for (const auto& p : props)
        if (p.name == name) return p.value;
    return std::nullopt;
}

ScopeSpec scope() {
    ScopeSpec s;
    s.name = "crisd-" + std::string(64, 'a') + ".scope";
    s.slice = "kubepods-burstable-pod1234.slice";
    s.description = "container x";
    s.pids = {42, 43};
    return s;
}

}  // namespace

TEST(SliceName, ExpandsAsSystemdNestsSlices) {
    EXPECT_EQ(expand_slice("kubepods-burstable-pod12_34.slice"),
              (std::vector<std::string>{"kubepods.slice", "kubepods-burstable.slice",
                                        "kubepods-burstable-pod12_34.slice"}));
    EXPECT_EQ(expand_slice("crisd.slice"), (std::vector<std::string>{"crisd.slice"}));
    EXPECT_TRUE(expand_slice("-.slice").empty());
}

TEST(SliceName, RejectsWhatSystemdRejects) {
    for (const std::string& bad : std::vector<std::string>{"", "kubepods", "kubepods.scope", "-kubepods.slice", "kubepods-.slice", "a--b.slice", ".slice",
          "a/b.slice", "a b.slice", "pod@1.slice", std::string(250, 'a') + ".slice",
                                                           "/kubepods/burstable"}) {
        EXPECT_EQ(code_of([&] { expand_slice(bad); }), Code::InvalidArgument) << bad;
    }
    try {
        check_slice_name("a--b.slice");
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("a--b.slice"), std::string::npos) << e.what();
    }
}

TEST(UnitName, Validity) {
    EXPECT_TRUE(valid_unit_name("crisd-abc.scope"));
    EXPECT_TRUE(valid_unit_name("getty@tty1.service"));
    EXPECT_TRUE(valid_unit_name("-.slice"));
    EXPECT_FALSE(valid_unit_name("crisd-abc"));
    EXPECT_FALSE(valid_unit_name("crisd abc.scope"));
    EXPECT_FALSE(valid_unit_name("crisd-abc.scopes"));
    EXPECT_FALSE(valid_unit_name(".scope"));
    EXPECT_EQ(unit_type_interface("crisd-abc.scope"), "org.freedesktop.systemd1.Scope");
    EXPECT_EQ(unit_type_interface("kubepods.slice"), "org.freedesktop.systemd1.Slice");
}

TEST(UnitName, LogFields) {
    const std::string id(64, 'b');
    const auto f = unit_log_fields("crisd-" + id + ".scope");
    ASSERT_EQ(f.size(), 3u);
    EXPECT_EQ(f[0], (std::pair<std::string, std::string>{"CRISD_UNIT", "crisd-" + id + ".scope"}));
    EXPECT_EQ(f[1], (std::pair<std::string, std::string>{"CONTAINER_ID", std::string(12, 'b')}));
    EXPECT_EQ(f[2], (std::pair<std::string, std::string>{"CONTAINER_ID_FULL", id}));
    EXPECT_EQ(unit_log_fields("crisd-conmon-" + id + ".scope").size(), 3u);
    EXPECT_EQ(unit_log_fields("crisd-short.scope").size(), 1u);
    EXPECT_EQ(unit_log_fields("kubepods.slice").size(), 1u);
}

TEST(CpuShares, WeightConversionMatchesKubernetes) {
    EXPECT_EQ(cpu_shares_to_weight(2), 1u);
    EXPECT_EQ(cpu_shares_to_weight(1024), 39u);
    EXPECT_EQ(cpu_shares_to_weight(262144), 10000u);
    EXPECT_EQ(cpu_shares_to_weight(0), 1u);  // clamped
    EXPECT_EQ(cpu_weight_to_shares(1), 2u);
    EXPECT_EQ(cpu_weight_to_shares(10000), 262144u);
    for (std::uint64_t w : {1u, 2u, 39u, 100u, 5000u, 9999u, 10000u})
        EXPECT_EQ(cpu_shares_to_weight(cpu_weight_to_shares(w)), w) << w;
}

TEST(CpuQuota, PerSecondRoundedUpToTenMilliseconds) {
    EXPECT_EQ(cpu_quota_per_sec(50000, 100000), 500000u);  // 0.5 CPU
    EXPECT_EQ(cpu_quota_per_sec(200000, 100000), 2000000u);
    EXPECT_EQ(cpu_quota_per_sec(1000, 100000), 10000u);  // 1 %: exact
    EXPECT_EQ(cpu_quota_per_sec(1500, 100000), 20000u);  // 1.5 % -> 2 %
    EXPECT_EQ(cpu_quota_per_sec(25000, 50000), 500000u);
    EXPECT_EQ(cpu_quota_per_sec(kUnlimited, 100000), kUnlimited);
    EXPECT_EQ(code_of([] { cpu_quota_per_sec(1000, 0); }), Code::InvalidArgument);
}

TEST(Cpuset, ParsesToSystemdBitmask) {
    EXPECT_EQ(parse_cpuset("0"), (std::vector<std::uint8_t>{0x01}));
    EXPECT_EQ(parse_cpuset("0-3,8"), (std::vector<std::uint8_t>{0x0f, 0x01}));
    EXPECT_EQ(parse_cpuset("1,3"), (std::vector<std::uint8_t>{0x0a}));
    EXPECT_EQ(parse_cpuset(" 7 \n"), (std::vector<std::uint8_t>{0x80}));
    EXPECT_EQ(parse_cpuset("16").size(), 3u);
    EXPECT_TRUE(parse_cpuset("").empty());
    for (const std::string bad : {"a", "1-", "-1", "3-1", "1,,2", "1;2", "0x1", "99999", "1-2-3"})
        EXPECT_EQ(code_of([&] { parse_cpuset(bad); }), Code::InvalidArgument) << bad;
}

TEST(Cpuset, FormatsCanonically) {
    EXPECT_EQ(format_cpuset({0x0f, 0x01}), "0-3,8");
    EXPECT_EQ(format_cpuset({0x0a}), "1,3");
    EXPECT_EQ(format_cpuset({}), "");
    EXPECT_EQ(format_cpuset({0xff, 0xff}), "0-15");
    for (const std::string s : {"0", "0-3,8", "1,3,5-7,64"}) EXPECT_EQ(format_cpuset(parse_cpuset(s)), s);
}

TEST(Resources, EncodingOnCgroupV1) {
    Resources r;
    r.cpu_shares = 512;
    r.cpu_quota_us = 50000;
    r.cpu_period_us = 100000;
    r.memory_max = 256 << 20;
    r.tasks_max = 64;
    r.cpuset_cpus = "0";
    r.cpuset_mems = "0";
    const auto props = resource_properties(r, CgroupVersion::V1);
    EXPECT_EQ(find(props, "CPUShares"), PropertyValue(std::uint64_t{512}));
    EXPECT_FALSE(find(props, "CPUWeight"));
    EXPECT_EQ(find(props, "CPUQuotaPerSecUSec"), PropertyValue(std::uint64_t{500000}));
    EXPECT_EQ(find(props, "CPUQuotaPeriodUSec"), PropertyValue(std::uint64_t{100000}));
    EXPECT_EQ(find(props, "MemoryMax"), PropertyValue(std::uint64_t{256 << 20}));
    EXPECT_EQ(find(props, "TasksMax"), PropertyValue(std::uint64_t{64}));
    EXPECT_EQ(find(props, "AllowedCPUs"), PropertyValue(std::vector<std::uint8_t>{0x01}));
    EXPECT_EQ(find(props, "AllowedMemoryNodes"), PropertyValue(std::vector<std::uint8_t>{0x01}));
}

TEST(Resources, EncodingOnCgroupV2AndDefaults) {
    Resources r;
    r.cpu_shares = 1024;
    r.cpu_quota_us = 150000;  // no period: the CFS default 100 ms
    const auto props = resource_properties(r, CgroupVersion::V2);
    EXPECT_EQ(find(props, "CPUWeight"), PropertyValue(std::uint64_t{39}));
    EXPECT_FALSE(find(props, "CPUShares"));
    EXPECT_EQ(find(props, "CPUQuotaPerSecUSec"), PropertyValue(std::uint64_t{1500000}));
    EXPECT_FALSE(find(props, "CPUQuotaPeriodUSec"));
    EXPECT_TRUE(resource_properties(Resources{}, CgroupVersion::V2).empty());
}

// A description goes out with the limits (a scope the runtime named), and
// alone it is not empty; a new scope takes ScopeSpec::description only.
TEST(Resources, DescriptionGoesWithTheLimits) {
    Resources r;
    r.description = "crisd container web in pod default/web-1";
    EXPECT_FALSE(r.empty());
    EXPECT_EQ(resource_properties(r, CgroupVersion::V1),
              (std::vector<Property>{{"Description", std::string("crisd container web in pod default/web-1")}}));
    auto s = scope();
    s.resources.description = "not this one";
    const auto props = scope_properties(s, "crisd.slice", CgroupVersion::V1);
    EXPECT_EQ(std::count_if(props.begin(), props.end(), [](const Property& p) { return p.name == "Description"; }),
              1);
    EXPECT_EQ(find(props, "Description"), PropertyValue(std::string("container x")));
}

TEST(Resources, UnlimitedIsInfinity) {
    Resources r;
    r.memory_max = kUnlimited;
    r.tasks_max = kUnlimited;
    r.cpu_quota_us = kUnlimited;
    r.cpuset_cpus = "";
    const auto props = resource_properties(r, CgroupVersion::V1);
    EXPECT_EQ(find(props, "MemoryMax"), PropertyValue(UINT64_MAX));
    EXPECT_EQ(find(props, "TasksMax"), PropertyValue(UINT64_MAX));
    EXPECT_EQ(find(props, "CPUQuotaPerSecUSec"), PropertyValue(UINT64_MAX));
    EXPECT_EQ(find(props, "AllowedCPUs"), PropertyValue(std::vector<std::uint8_t>{}));
}

TEST(Resources, Validation) {
    const auto bad = [](auto set) {
        Resources r;
        set(r);
        return code_of([&] { resource_properties(r, CgroupVersion::V1); });
    };
    EXPECT_EQ(bad([](Resources& r) { r.cpu_shares = 1; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.cpu_shares = 262145; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.cpu_period_us = 999; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.cpu_period_us = 1000001; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.cpu_quota_us = 999; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.memory_max = 0; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.tasks_max = 0; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.cpuset_cpus = "x"; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.cpuset_mems = "1-0"; }), Code::InvalidArgument);
    EXPECT_EQ(bad([](Resources& r) { r.cpu_shares = 2; }), Code::Ok);
}

TEST(ScopeProperties, EverythingTheIssueAsksFor) {
    auto s = scope();
    s.kill_signal = SIGCONT;
    s.resources.memory_max = 1 << 30;
    const auto props = scope_properties(s, "crisd.slice", CgroupVersion::V1);
    EXPECT_EQ(props[0], (Property{"Description", std::string("container x")}));
    EXPECT_EQ(find(props, "Slice"), PropertyValue(std::string("kubepods-burstable-pod1234.slice")));
    EXPECT_EQ(find(props, "PIDs"), PropertyValue(std::vector<std::uint32_t>{42, 43}));
    EXPECT_EQ(find(props, "Delegate"), PropertyValue(true));
    EXPECT_EQ(find(props, "CollectMode"), PropertyValue(std::string("inactive-or-failed")));
    EXPECT_EQ(find(props, "KillSignal"), PropertyValue(std::int32_t{SIGCONT}));
    EXPECT_EQ(find(props, "MemoryMax"), PropertyValue(std::uint64_t{1 << 30}));
}

TEST(ScopeProperties, DefaultsAndErrors) {
    auto s = scope();
    s.slice.clear();
    s.description.clear();
    const auto props = scope_properties(s, "crisd.slice", CgroupVersion::V2);
    EXPECT_EQ(find(props, "Slice"), PropertyValue(std::string("crisd.slice")));
    EXPECT_EQ(find(props, "Description"), PropertyValue("crisd " + s.name));
    EXPECT_FALSE(find(props, "KillSignal"));

    const auto code = [](auto change) {
        auto sp = scope();
        change(sp);
        return code_of([&] { scope_properties(sp, "crisd.slice", CgroupVersion::V1); });
    };
    EXPECT_EQ(code([](ScopeSpec& sp) { sp.name = "crisd-x.service"; }), Code::InvalidArgument);
    EXPECT_EQ(code([](ScopeSpec& sp) { sp.name = "crisd x.scope"; }), Code::InvalidArgument);
    EXPECT_EQ(code([](ScopeSpec& sp) { sp.pids.clear(); }), Code::InvalidArgument);
    EXPECT_EQ(code([](ScopeSpec& sp) { sp.pids = {0}; }), Code::InvalidArgument);
    EXPECT_EQ(code([](ScopeSpec& sp) { sp.slice = "a--b.slice"; }), Code::InvalidArgument);
    EXPECT_EQ(code([](ScopeSpec& sp) { sp.kill_signal = 0; }), Code::InvalidArgument);
    EXPECT_EQ(code([](ScopeSpec& sp) { sp.resources.cpu_shares = 1; }), Code::InvalidArgument);
}

TEST(DbusErrors, MappedByName) {
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.systemd1.UnitExists"), Code::AlreadyExists);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.systemd1.NoSuchUnit"), Code::NotFound);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.DBus.Error.InvalidArgs"), Code::InvalidArgument);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.DBus.Error.AccessDenied"), Code::PermissionDenied);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"),
              Code::PermissionDenied);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.systemd1.UnitMasked"), Code::FailedPrecondition);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.DBus.Error.ServiceUnknown"), Code::Unavailable);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.DBus.Error.Disconnected"), Code::Unavailable);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.DBus.Error.NoReply"), Code::DeadlineExceeded);
    EXPECT_EQ(code_for_dbus_error("org.freedesktop.DBus.Error.UnknownMethod"), Code::Unimplemented);
    EXPECT_EQ(code_for_dbus_error("com.example.Whatever"), Code::Internal);
    // The message never decides.
    const auto e = dbus_error("StartTransientUnit x.scope", "org.freedesktop.systemd1.UnitExists",
                              "access denied, invalid argument");
    EXPECT_EQ(e.code(), Code::AlreadyExists);
    EXPECT_STREQ(e.what(),
                 "StartTransientUnit x.scope: access denied, invalid argument "
                 "(org.freedesktop.systemd1.UnitExists)");
}

TEST(DbusErrors, TransientOnes) {
    EXPECT_TRUE(is_transient_dbus_error("org.freedesktop.DBus.Error.Disconnected"));
    EXPECT_TRUE(is_transient_dbus_error("org.freedesktop.DBus.Error.NoReply"));
    EXPECT_TRUE(is_transient_dbus_error("System.Error.ENOTCONN"));
    EXPECT_FALSE(is_transient_dbus_error("org.freedesktop.systemd1.UnitExists"));
    EXPECT_FALSE(is_transient_dbus_error("org.freedesktop.DBus.Error.AccessDenied"));
}

TEST(JobResults, Codes) {
    EXPECT_EQ(code_for_job_result("done"), Code::Ok);
    EXPECT_EQ(code_for_job_result("canceled"), Code::Aborted);
    EXPECT_EQ(code_for_job_result("timeout"), Code::DeadlineExceeded);
    EXPECT_EQ(code_for_job_result("dependency"), Code::FailedPrecondition);
    EXPECT_EQ(code_for_job_result("failed"), Code::Internal);
}
