/**
 * The cluster view that gossip spreads, and the pure functions over it: merge
 * two views, and derive from one the leader, the oldest member and who is
 * unreachable.
 *
 * Reachability is judged by a viewer, not by the view alone: a report by an
 * observer that the viewer's own failure detector cannot hear may be stale
 * forever (the observer may be dead), so it is ignored. A viewer trusts
 * itself and every observer it does not itself report unreachable; see
 * {@linkcode reachabilityOf}. The leader is then the lowest Up or Leaving
 * address that no trusted observer reports unreachable, the viewer itself
 * always included, and never an unreachable member. Two nodes that hear
 * different peers may both lead for a while; whatever they decide merges.
 *
 * @module
 */
import { hasQuorum, isMajority } from "./quorum.ts";
import { isActive, type Member, type MemberStatus, statusRank } from "./members.ts";
import { compareAddresses, type NodeId, nodeKey, sameNode } from "../remoting/node.ts";

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

/**
 * Unreachable members (not yet Removed) with who observed it, by address, as
 * any observer reports it: for display. Decisions use {@linkcode reachabilityOf}.
 */
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

/** What one viewer makes of the failure-detector reports in a view. */
export interface Reachability {
  /** Keys (`address#uid`) of the observers whose reports count: the viewer and those it hears. */
  readonly trusted: ReadonlySet<string>;
  /** Members that a trusted observer reports unreachable, by address. */
  readonly unreachable: ReadonlyMap<string, Member>;
  /** Whether the members the viewer counts as reachable are at least half of the Joining, Up and Leaving ones. */
  readonly quorum: boolean;
  /**
   * Joining, Up and Leaving members other than the viewer that a strict
   * majority of the trusted observers (not counting the member itself) report
   * unreachable: the ones the viewer may down, given a quorum and time.
   */
  readonly downable: readonly Member[];
}

/** The statuses of the members that take part: counted for a quorum, and told of as members. */
export const TAKES_PART: readonly MemberStatus[] = ["Joining", "Up", "Leaving"];

/**
 * Reachability as `viewer` sees it. Only observers that the viewer's own
 * failure detector hears (and the viewer) are trusted, so a dead member's
 * last report cannot keep a live member unreachable. A member is downable
 * only when most trusted observers other than itself report it, so a link
 * that fails one way between two members does not get a member downed that
 * the others hear. Half of the members is a quorum, so a two-node cluster
 * survives a crash.
 */
export function reachabilityOf(state: GossipState, viewer: NodeId): Reachability {
  const reportsOf = (observer: NodeId): readonly NodeId[] => {
    const observation = state.observations.get(observer.address);
    return observation && sameNode(observation.observer, observer) ? observation.unreachable : [];
  };
  const unheard = new Set(reportsOf(viewer).map(nodeKey));
  const participants = liveMembers(state).filter((m) => TAKES_PART.includes(m.status));
  const observers = [
    viewer,
    ...participants.map((m) => m.node).filter((node) => !sameNode(node, viewer) && !unheard.has(nodeKey(node))),
  ];
  const trusted = new Set(observers.map(nodeKey));
  const reporters = new Map<string, Set<string>>();
  for (const observer of observers) {
    for (const node of reportsOf(observer)) {
      const key = nodeKey(node);
      reporters.set(key, (reporters.get(key) ?? new Set()).add(nodeKey(observer)));
    }
  }
  const unreachable = new Map<string, Member>();
  for (const m of state.members.values()) {
    if (m.status !== "Removed" && reporters.has(nodeKey(m.node))) unreachable.set(m.node.address, m);
  }
  const downable = participants.filter((m) => {
    const key = nodeKey(m.node);
    const voters = trusted.has(key) ? trusted.size - 1 : trusted.size;
    return !sameNode(m.node, viewer) && isMajority(reporters.get(key)?.size ?? 0, voters);
  });
  return { trusted, unreachable, quorum: holdsQuorum(state, participants, viewer), downable };
}

/**
 * Whether the participants `node` itself hears (and itself) are a quorum. It
 * rests on the node's own reports only: a trusted peer's report about the
 * node, or about a member the node hears, must not take the node's side away from it.
 */
function holdsQuorum(state: GossipState, participants: readonly Member[], node: NodeId): boolean {
  const observation = state.observations.get(node.address);
  const unheard = new Set(
    observation && sameNode(observation.observer, node) ? observation.unreachable.map(nodeKey) : [],
  );
  const reachable = participants.filter((m) => sameNode(m.node, node) || !unheard.has(nodeKey(m.node))).length;
  return hasQuorum(reachable, participants.length);
}

/**
 * The leader as `viewer` sees it: the lowest address among Up and Leaving
 * members that no observer it trusts reports unreachable, the viewer itself
 * always a candidate while Up or Leaving (as in Akka), and only when there is
 * none such, among Joining members alike. Undefined when there is none: an
 * unreachable member never leads.
 */
export function leaderOf(state: GossipState, viewer: NodeId): Member | undefined {
  const { unreachable } = reachabilityOf(state, viewer);
  const participants = liveMembers(state).filter((m) => TAKES_PART.includes(m.status));
  // A member whose own reports leave it without a quorum cannot do a leader's duties (it downs
  // nobody), so it must not stand in the way of one that can.
  const candidate = (m: Member) =>
    (sameNode(m.node, viewer) || !unreachable.has(m.node.address)) && holdsQuorum(state, participants, m.node);
  // With no Up or Leaving member left to lead (they died while others were still joining), a Joining one leads,
  // as in Akka: else nobody would ever move the Joining members Up, nor down the dead.
  return liveMembers(state).find((m) => isActive(m.status) && candidate(m)) ??
    liveMembers(state).find((m) => m.status === "Joining" && candidate(m));
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

/**
 * A view without the incarnations `gone` names: their entries, their
 * observations, and the reports about them.
 */
export function withoutIncarnations(state: GossipState, gone: (node: NodeId) => boolean): GossipState {
  const members = new Map([...state.members].filter(([, m]) => !gone(m.node)));
  const observations = new Map<string, Observation>();
  for (const [address, observation] of state.observations) {
    if (gone(observation.observer)) continue;
    const unreachable = observation.unreachable.filter((node) => !gone(node));
    observations.set(
      address,
      unreachable.length === observation.unreachable.length ? observation : { ...observation, unreachable },
    );
  }
  return { members, observations };
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
