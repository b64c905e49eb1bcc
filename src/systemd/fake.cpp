#include "systemd/fake.hpp"

namespace crisd::systemd {

FakeManager::FakeManager(CgroupVersion version, std::string default_slice)
    : version_(version), default_slice_(std::move(default_slice)) {}

void FakeManager::enter(const std::string& method, const std::string& arg) {
    calls_.push_back(method + " " + arg);
    if (auto it = failures_.find(method); it != failures_.end()) {
        Error e = it->second;
        failures_.erase(it);
        throw e;
    }
}

void FakeManager::fail_next(const std::string& method, Error error) {
    std::lock_guard lock(mu_);
    failures_.insert_or_assign(method, std::move(error));
}

void FakeManager::start_scope(const ScopeSpec& spec) {
    auto props = scope_properties(spec, default_slice_, version_);
    const std::string slice = spec.slice.empty() ? default_slice_ : spec.slice;
    ensure_slice(slice);
    std::lock_guard lock(mu_);
    enter("start_scope", spec.name);
    if (units_.count(spec.name))
        throw Error(Code::AlreadyExists, "StartTransientUnit " + spec.name + ": Unit " + spec.name +
                                             " already exists. (org.freedesktop.systemd1.UnitExists)");
    Unit u;
    u.slice = slice;
    u.properties = std::move(props);
    units_.emplace(spec.name, std::move(u));
}

bool FakeManager::ensure_slice(const std::string& slice) {
    const auto chain = expand_slice(slice);
    std::lock_guard lock(mu_);
    enter("ensure_slice", slice);
    bool created = false;
    for (const auto& s : chain) {
        created = false;
        if (units_.count(s)) continue;
        created = true;
        Unit u;
        u.properties.push_back({"Description", "Slice " + s + " (created by crisd)"});
        units_.emplace(s, std::move(u));
        created_slices_.push_back(s);
    }
    return created;
}

bool FakeManager::stop_slice_if_empty(const std::string& slice) {
    {
        std::lock_guard lock(mu_);
        enter("stop_slice_if_empty", slice);
        const auto nested = slice.substr(0, slice.size() - 6) + "-";  // "a-b.slice" holds "a-b-c.slice"
        for (const auto& [name, u] : units_)
            if (u.slice == slice || (name != slice && name.rfind(nested, 0) == 0)) return false;
    }
    stop_unit(slice);
    return true;
}

void FakeManager::stop_unit(const std::string& unit) {
    std::lock_guard lock(mu_);
    enter("stop_unit", unit);
    if (!valid_unit_name(unit)) throw Error(Code::InvalidArgument, "invalid unit name \"" + unit + "\"");
    units_.erase(unit);  // CollectMode=inactive-or-failed: gone once stopped
}

void FakeManager::kill_unit(const std::string& unit, int signal) {
    std::lock_guard lock(mu_);
    enter("kill_unit", unit);
    auto it = units_.find(unit);
    if (it == units_.end())
        throw Error(Code::NotFound, "KillUnit " + unit + ": Unit " + unit +
                                        " not loaded. (org.freedesktop.systemd1.NoSuchUnit)");
    it->second.signals.push_back(signal);
}

void FakeManager::set_properties(const std::string& unit, const Resources& resources) {
    auto props = with_context("updating " + unit, [&] { return resource_properties(resources, version_); });
    std::lock_guard lock(mu_);
    enter("set_properties", unit);
    auto it = units_.find(unit);
    if (it == units_.end())
        throw Error(Code::NotFound, "SetUnitProperties " + unit + ": Unit " + unit + " not loaded.");
    it->second.properties.insert(it->second.properties.end(), props.begin(), props.end());
}

UnitState FakeManager::unit_state(const std::string& unit) {
    std::lock_guard lock(mu_);
    enter("unit_state", unit);
    auto it = units_.find(unit);
    if (it == units_.end()) throw Error(Code::NotFound, "Unit " + unit + " not loaded.");
    return {"loaded", it->second.active_state, it->second.active_state == "active" ? "running" : "dead"};
}

std::string FakeManager::cgroup_of(const std::string& unit) const {
    std::string path;
    const auto& u = units_.at(unit);
    const std::string slice = u.slice.empty() ? unit : u.slice;
    for (const auto& s : expand_slice(slice)) path += "/" + s;
    if (!u.slice.empty()) path += "/" + unit;
    return path;
}

std::string FakeManager::control_group(const std::string& unit) {
    std::lock_guard lock(mu_);
    enter("control_group", unit);
    if (!units_.count(unit)) throw Error(Code::NotFound, "Unit " + unit + " not loaded.");
    return cgroup_of(unit);
}

void FakeManager::reset_failed(const std::string& unit) {
    std::lock_guard lock(mu_);
    enter("reset_failed", unit);
    auto it = units_.find(unit);
    if (it != units_.end() && it->second.active_state == "failed") units_.erase(it);
}

std::optional<FakeManager::Unit> FakeManager::unit(const std::string& name) const {
    std::lock_guard lock(mu_);
    auto it = units_.find(name);
    if (it == units_.end()) return std::nullopt;
    return it->second;
}

std::vector<std::string> FakeManager::calls() const {
    std::lock_guard lock(mu_);
    return calls_;
}

std::vector<std::string> FakeManager::created_slices() const {
    std::lock_guard lock(mu_);
    return created_slices_;
}

std::optional<PropertyValue> FakeManager::property(const std::string& unit, const std::string& name) const {
    std::lock_guard lock(mu_);
    auto it = units_.find(unit);
    if (it == units_.end()) return std::nullopt;
    std::optional<PropertyValue> out;
    for (const auto& p : it->second.properties)
        if (p.name == name) out = p.value;
    return out;
}

}  // namespace crisd::systemd
