// The device mesh (SPEC §3): launcher and device.
export { launchMesh, singleDevice, type LaunchOptions, type DeviceProgram } from './launch.js';
export { Device, type Wire, type CollectiveOptions, type BroadcastOptions, type MeshStats } from './device.js';
export type { MpiLaunchOptions } from './mpi.js';
