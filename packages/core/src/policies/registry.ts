/**
 * Policy registry: adding a policy is one file plus one `registerPolicy` line here.
 */
import { UnknownPolicyError } from '../errors.js';
import { BestFitPolicy } from './best-fit.js';
import { BestFitPoolsPolicy } from './best-fit-pools.js';
import { ExactShapePolicy } from './exact-shape.js';
import type { Policy, PolicyFactory } from './policy.js';
import { SizeClassPolicy } from './size-class.js';
import { TlsfPolicy } from './tlsf.js';

const factories = new Map<string, PolicyFactory>();

export function registerPolicy(name: string, factory: PolicyFactory): void {
  factories.set(name, factory);
}

export function policyNames(): string[] {
  return [...factories.keys()];
}

export function createPolicy(name: string): Policy {
  const factory = factories.get(name);
  if (factory === undefined) throw new UnknownPolicyError(String(name), policyNames());
  return factory();
}

export const DEFAULT_POLICY = 'bestFit';

registerPolicy('tlsf', () => new TlsfPolicy());
registerPolicy('bestFit', () => new BestFitPolicy());
registerPolicy('bestFitPools', () => new BestFitPoolsPolicy());
registerPolicy('sizeClass', () => new SizeClassPolicy());
registerPolicy('exactShape', () => new ExactShapePolicy());
