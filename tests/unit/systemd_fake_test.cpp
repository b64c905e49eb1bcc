// systemd::FakeManager: what unit tests of the module's callers rely on.
#include <gtest/gtest.h>

#include "systemd/fake.hpp"

using namespace crisd;
using namespace crisd::systemd;

namespace {

ScopeSpec spec(const std::string& name, const std::string& slice = "") {
    ScopeSpec s;
    s.name = name;
    s.slice = slice;
    s.pids = {100};
    return s;
}

}  // namespace

TEST(FakeManager, ScopeInPodSliceCreatesTheSlicesOnce) {
    FakeManager m;
    m.start_scope(spec("crisd-a.scope", "kubepods-burstable-pod1.slice"));
    m.start_scope(spec("crisd-b.scope", "kubepods-burstable-pod1.slice"));
    EXPECT_EQ(m.created_slices(), (std::vector<std::string>{"kubepods.slice", "kubepods-burstable.slice",
                                                            "kubepods-burstable-pod1.slice"}));
    EXPECT_EQ(m.control_group("crisd-a.scope"),
              "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crisd-a.scope");
    EXPECT_EQ(m.unit_state("crisd-b.scope").active_state, "active");
}

TEST(FakeManager, EncodesLikeTheRealOne) {
    FakeManager m(CgroupVersion::V1);
    auto s = spec("crisd-a.scope");
    s.resources.cpu_shares = 512;
    m.start_scope(s);
    EXPECT_EQ(m.property("crisd-a.scope", "Slice"), PropertyValue(std::string("crisd.slice")));
    EXPECT_EQ(m.property("crisd-a.scope", "CPUShares"), PropertyValue(std::uint64_t{512}));
    Resources r;
    r.memory_max = 1 << 20;
    m.set_properties("crisd-a.scope", r);
    EXPECT_EQ(m.property("crisd-a.scope", "MemoryMax"), PropertyValue(std::uint64_t{1 << 20}));
    Resources bad;
    bad.cpu_shares = 1;
    EXPECT_THROW(m.set_properties("crisd-a.scope", bad), Error);
}

TEST(FakeManager, ErrorsAsTheRealOneReportsThem) {
    FakeManager m;
    m.start_scope(spec("crisd-a.scope"));
    try {
        m.start_scope(spec("crisd-a.scope"));
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::AlreadyExists);
    }
    try {
        m.kill_unit("crisd-none.scope", 9);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
    }
    m.fail_next("stop_unit", Error(Code::PermissionDenied, "denied"));
    EXPECT_THROW(m.stop_unit("crisd-a.scope"), Error);
    m.kill_unit("crisd-a.scope", 15);
    EXPECT_EQ(m.unit("crisd-a.scope")->signals, std::vector<int>{15});
    m.stop_unit("crisd-a.scope");
    EXPECT_FALSE(m.unit("crisd-a.scope"));
    m.stop_unit("crisd-a.scope");  // already gone: fine
    EXPECT_EQ(m.calls().front(), "ensure_slice crisd.slice");
}
