// An in-memory systemd::Manager for unit tests of its callers: it validates
// and encodes exactly as the real one does (systemd/logic.hpp), keeps units
// and slices in a map, records every call, and can be told to fail the next
// call of a method.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "systemd/logic.hpp"
#include "systemd/systemd.hpp"

namespace crisd::systemd {

class FakeManager final : public Manager {
public:
    struct Unit {
        std::string slice;                 // scopes: their slice
        std::string active_state = "active";
        std::vector<Property> properties;  // as the real manager would send them, in order
        std::vector<int> signals;          // kill_unit calls
    };

    explicit FakeManager(CgroupVersion version = CgroupVersion::V1,
                         std::string default_slice = "crisd.slice");

    void start_scope(const ScopeSpec& spec) override;
    bool ensure_slice(const std::string& slice) override;
    void stop_unit(const std::string& unit) override;
    bool stop_slice_if_empty(const std::string& slice) override;
    void kill_unit(const std::string& unit, int signal) override;
    void set_properties(const std::string& unit, const Resources& resources) override;
    UnitState unit_state(const std::string& unit) override;
    std::string control_group(const std::string& unit) override;
    void reset_failed(const std::string& unit) override;

    // The next call of `method` ("start_scope", "stop_unit", ...) throws `error`.
    void fail_next(const std::string& method, Error error);

    // Inspection.
    std::optional<Unit> unit(const std::string& name) const;
    std::vector<std::string> calls() const;           // "start_scope crisd-x.scope", ...
    std::vector<std::string> created_slices() const;  // in creation order
    // The value the unit's property `name` has now (last one sent wins).
    std::optional<PropertyValue> property(const std::string& unit, const std::string& name) const;

private:
    void enter(const std::string& method, const std::string& arg);
    std::string cgroup_of(const std::string& unit) const;

    CgroupVersion version_;
    std::string default_slice_;
    mutable std::mutex mu_;
    std::map<std::string, Unit> units_;
    std::vector<std::string> calls_;
    std::vector<std::string> created_slices_;
    std::map<std::string, Error> failures_;
};

}  // namespace crisd::systemd
