import { Field, ID, ObjectType } from 'type-graphql';
import { RoleEnum } from '../enums';

@ObjectType()
export class Viewer {
  @Field(() => ID) tenantId: string;
  @Field() tenantName: string;
  @Field(() => RoleEnum) role: string;
  @Field(() => String, { nullable: true }) apiKeyName: string | null;
}

@ObjectType()
export class ApiKeyWithSecret {
  @Field(() => ID) id: string;
  @Field() name: string;
  @Field(() => RoleEnum) role: string;
  @Field({ description: 'shown once' }) secret: string;
}
