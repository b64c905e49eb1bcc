// The io.crisd.Daemon1 status object at /io/crisd/Daemon1 on the system bus:
// what an operator reads with busctl. Its data comes from a Provider that the
// daemon wires to the services that own it; the object only publishes it.
//
// The bus is optional for crisd: without one (or without the bus policy that
// lets root own the name) the service logs a warning and keeps retrying in
// the background, and the CRI is served all the same.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/condition.hpp"

namespace crisd::status {

inline constexpr const char* kBusName = "io.crisd.Daemon1";
inline constexpr const char* kObjectPath = "/io/crisd/Daemon1";
inline constexpr const char* kInterface = "io.crisd.Daemon1";

struct ContainerRow {
    std::string id;     // 64 hex
    std::string name;   // CRI metadata name
    std::string pod;    // pod sandbox id
    std::string state;  // CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED, ...
    std::string scope;  // crisd-<id>.scope
};

struct Counts {
    std::uint32_t pods = 0;
    std::uint32_t containers = 0;
    std::uint32_t running_containers = 0;
    std::uint32_t images = 0;
    bool operator==(const Counts&) const = default;
};

// The same data as the CRI Status call with verbose=true.
struct RuntimeStatus {
    std::vector<Condition> conditions;  // RuntimeReady, NetworkReady
    std::vector<std::string> runtime_handlers;
    std::map<std::string, std::string> info;
};

class Provider {
public:
    virtual ~Provider() = default;
    virtual RuntimeStatus status() const = 0;
    virtual Counts counts() const = 0;
    virtual std::vector<ContainerRow> containers() const = 0;
    virtual std::string stream_address() const = 0;  // "" while there is no streaming server
};

struct Options {
    std::string version;  // the Version property
    std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();
    // How often the provider is polled for changes that nobody reported
    // through refresh() (a runtime binary appearing, ...).
    std::chrono::milliseconds poll{5000};
    std::string bus_address;  // "" = the system bus; else an address (tests)
};

class Service {
public:
    // Starts connecting in the background; never throws for a missing bus.
    Service(const Provider& provider, Options options);
    ~Service();  // releases the name
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    // Re-reads the provider and emits PropertiesChanged for what changed.
    void refresh();
    // Signals ContainerStarted / ContainerExited (and refreshes the counts).
    void container_started(const std::string& id);
    void container_exited(const std::string& id, std::int32_t exit_code);

    // The object is on the bus and the name is ours.
    bool published() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace crisd::status
