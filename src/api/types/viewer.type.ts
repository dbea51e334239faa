import { Field, ID, ObjectType } from 'type-graphql';
import { RoleEnum } from '../enums';
import { DateTimeScalar } from '../scalars';

@ObjectType({ simpleResolvers: true })
export class Viewer {
  @Field(() => ID) tenantId: string;
  @Field() tenantName: string;
  @Field(() => RoleEnum) role: string;
  @Field(() => String, { nullable: true }) apiKeyName: string | null;
}

@ObjectType({ simpleResolvers: true })
export class ApiKeyWithSecret {
  @Field(() => ID) id: string;
  @Field() name: string;
  @Field(() => RoleEnum) role: string;
  @Field({ description: 'shown once' }) secret: string;
}

@ObjectType({ simpleResolvers: true, description: 'An API key of the tenant, without its secret' })
export class ApiKey {
  @Field(() => ID) id: string;
  @Field() name: string;
  @Field(() => RoleEnum) role: string;
  @Field(() => DateTimeScalar) createdAt: number;
  @Field(() => DateTimeScalar, { nullable: true, description: 'to the minute; null when the key was never used' })
  lastUsedAt: number | null;
}
