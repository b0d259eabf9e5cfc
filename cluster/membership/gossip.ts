/**
 * The cluster view that gossip spreads, and the pure functions over it: merge
 * two views, and derive from one the leader, the oldest member and who is
 * unreachable. Every node that holds the same view derives the same answers.
 *
 * @module
 */
import { isActive, type Member, statusRank } from "./members.ts";
import { compareAddresses, type NodeId, sameNode } from "../remoting/node.ts";

/** One observer's failure-detector verdicts; a higher version replaces a lower one. */
export interface Observation {
  readonly observer: NodeId;
  readonly version: number;
  readonly unreachable: readonly NodeId[];
}

/** The shared view: members by address, and each observer's latest observation by address. */
export interface GossipState {
  readonly members: ReadonlyMap<string, Member>;
  readonly observations: ReadonlyMap<string, Observation>;
}

/** A view with no members. */
export const EMPTY_GOSSIP: GossipState = { members: new Map(), observations: new Map() };

/**
 * The later of two entries for one address: the newer incarnation (higher uid)
 * wins outright; for one incarnation the later status wins, and the lowest
 * non-zero up-number (so two leaders' concurrent choices settle the same way
 * everywhere).
 */
export function mergeMember(a: Member, b: Member): Member {
  if (a.node.uid !== b.node.uid) return a.node.uid > b.node.uid ? a : b;
  const status = statusRank(a.status) >= statusRank(b.status) ? a.status : b.status;
  const upNumber = a.upNumber === 0 ? b.upNumber : b.upNumber === 0 ? a.upNumber : Math.min(a.upNumber, b.upNumber);
  const management = a.management || b.management;
  return status === a.status && upNumber === a.upNumber && management === a.management
    ? a
    : { node: a.node, status, upNumber, management };
}

/** Merges two views; the result is the same whichever comes first. */
export function mergeGossip(a: GossipState, b: GossipState): GossipState {
  const members = new Map(a.members);
  for (const [address, member] of b.members) {
    const mine = members.get(address);
    members.set(address, mine ? mergeMember(mine, member) : member);
  }
  const observations = new Map(a.observations);
  for (const [address, observation] of b.observations) {
    const mine = observations.get(address);
    if (!mine || newerObservation(observation, mine)) observations.set(address, observation);
  }
  return prune({ members, observations });
}

function newerObservation(a: Observation, b: Observation): boolean {
  if (a.observer.uid !== b.observer.uid) return a.observer.uid > b.observer.uid;
  return a.version > b.version;
}

/** The current member entry for `node`, if that incarnation is the one in the view. */
export function memberOf(state: GossipState, node: NodeId): Member | undefined {
  const member = state.members.get(node.address);
  return member && member.node.uid === node.uid ? member : undefined;
}

/** Drops observations by, and verdicts about, incarnations that are gone. */
export function prune(state: GossipState): GossipState {
  const current = (node: NodeId) => {
    const member = memberOf(state, node);
    return member !== undefined && member.status !== "Removed";
  };
  const observations = new Map<string, Observation>();
  for (const [address, observation] of state.observations) {
    if (!current(observation.observer) || memberOf(state, observation.observer)?.status === "Down") continue;
    const unreachable = observation.unreachable.filter(current);
    observations.set(
      address,
      unreachable.length === observation.unreachable.length ? observation : { ...observation, unreachable },
    );
  }
  return { members: state.members, observations };
}

/** Unreachable members (not yet Removed) with who observed it, by address. */
export function unreachableMembers(state: GossipState): Map<string, { node: NodeId; observers: NodeId[] }> {
  const result = new Map<string, { node: NodeId; observers: NodeId[] }>();
  for (const observation of state.observations.values()) {
    for (const node of observation.unreachable) {
      const entry = result.get(node.address) ?? { node, observers: [] };
      entry.observers.push(observation.observer);
      result.set(node.address, entry);
    }
  }
  return result;
}

/** Members that are not Removed, in address order. */
export function liveMembers(state: GossipState): Member[] {
  return [...state.members.values()]
    .filter((m) => m.status !== "Removed")
    .sort((a, b) => compareAddresses(a.node.address, b.node.address));
}

/**
 * The leader: the lowest address among Up and Leaving members that nobody
 * reports unreachable (among all Up and Leaving ones if everyone is).
 */
export function leaderOf(state: GossipState): Member | undefined {
  const candidates = liveMembers(state).filter((m) => isActive(m.status));
  const unreachable = unreachableMembers(state);
  return candidates.find((m) => !unreachable.has(m.node.address)) ?? candidates[0];
}

/** The oldest Up or Leaving member: lowest up-number, then lowest address. */
export function oldestOf(state: GossipState): Member | undefined {
  return liveMembers(state)
    .filter((m) => isActive(m.status))
    .sort((a, b) => a.upNumber - b.upNumber || compareAddresses(a.node.address, b.node.address))[0];
}

/** Whether `node` is a member of the view that has not been downed or removed. */
export function isMember(state: GossipState, node: NodeId): boolean {
  const member = memberOf(state, node);
  return member !== undefined && member.status !== "Down" && member.status !== "Removed";
}

/** A view with `member` set (replacing whatever incarnation held its address). */
export function withMember(state: GossipState, member: Member): GossipState {
  const members = new Map(state.members);
  members.set(member.node.address, member);
  return prune({ members, observations: state.observations });
}

/** A view with `observation` set for its observer. */
export function withObservation(state: GossipState, observation: Observation): GossipState {
  const observations = new Map(state.observations);
  observations.set(observation.observer.address, observation);
  return { members: state.members, observations };
}

/** Whether two views hold the same members and observations. */
export function sameGossip(a: GossipState, b: GossipState): boolean {
  if (a.members.size !== b.members.size || a.observations.size !== b.observations.size) return false;
  for (const [address, m] of a.members) {
    const o = b.members.get(address);
    if (!o || !sameNode(m.node, o.node) || m.status !== o.status || m.upNumber !== o.upNumber) return false;
  }
  for (const [address, m] of a.observations) {
    const o = b.observations.get(address);
    if (!o || !sameNode(m.observer, o.observer) || m.version !== o.version) return false;
  }
  return true;
}
