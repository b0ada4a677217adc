package api

// The API's enumerations are plain strings. Their values are the
// replicated state's; the server's converters (package daemon/wire) carry them
// over and a test there checks that every value below still is one.

// AdminStatus says whether a host takes VMs.
type AdminStatus string

const (
	Available     AdminStatus = "AVAILABLE"
	NotAccepting  AdminStatus = "NOT_ACCEPTING"
	InMaintenance AdminStatus = "MAINTENANCE"
	Offline       AdminStatus = "OFFLINE"
)

// MaintenanceState is where a host is in the maintenance life cycle.
type MaintenanceState string

const (
	MaintenanceOff       MaintenanceState = "off"
	MaintenanceEntering  MaintenanceState = "entering"
	MaintenanceOn        MaintenanceState = "on"
	MaintenanceError     MaintenanceState = "error"
	MaintenanceCancelled MaintenanceState = "cancelled"
	MaintenanceExiting   MaintenanceState = "exiting"
)

// HostHealth is the fused view of whether a host's hypervisor is alive
// (Health is the answer of /healthz).
type HostHealth string

const (
	HealthUnknown HostHealth = "unknown"
	HealthAlive   HostHealth = "alive"
	HealthSuspect HostHealth = "suspect"
	HealthDead    HostHealth = "dead"
	HealthFenced  HostHealth = "fenced"
)

// Connection is the driver's own view of a host's management connection.
type Connection string

const (
	Connected     Connection = "connected"
	Disconnected  Connection = "disconnected"
	NotResponding Connection = "notResponding"
)

// PowerState of a VM.
type PowerState string

const (
	PoweredOn  PowerState = "running"
	PoweredOff PowerState = "stopped"
	Suspended  PowerState = "suspended"
)

// OpKind is what an operation does.
type OpKind string

const (
	OpEvacuate OpKind = "evacuate"
	OpExit     OpKind = "exit"
	OpMigrate  OpKind = "migrate"
	OpBalance  OpKind = "balance"
	OpRecover  OpKind = "recover"
)

// OpState is where an operation is.
type OpState string

const (
	OpRunning   OpState = "running"
	OpSucceeded OpState = "succeeded"
	OpFailed    OpState = "failed"
	OpCancelled OpState = "cancelled"
)

// Terminal reports whether the operation has ended.
func (s OpState) Terminal() bool { return s == OpSucceeded || s == OpFailed || s == OpCancelled }

// Item actions.
const (
	ActionLiveMigrate    = "live-migrate"
	ActionOfflineMigrate = "offline-migrate"
	ActionShutdown       = "shutdown"
	ActionPowerOn        = "power-on"
	// Recovery: a VM recreated or registered on another host, or waiting
	// for its own host to return.
	ActionRecreate  = "recreate"
	ActionRegister  = "register"
	ActionAwaitHost = "await-host"
)

// ItemState is where one VM of an operation is.
type ItemState string

const (
	ItemPending   ItemState = "pending"
	ItemRunning   ItemState = "running"
	ItemDone      ItemState = "done"
	ItemFailed    ItemState = "failed"
	ItemCancelled ItemState = "cancelled"
)

// Terminal reports whether the item has ended.
func (s ItemState) Terminal() bool { return s == ItemDone || s == ItemFailed || s == ItemCancelled }
