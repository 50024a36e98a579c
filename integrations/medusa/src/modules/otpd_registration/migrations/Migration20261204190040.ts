import { Migration } from "@medusajs/framework/mikro-orm/migrations";

export class Migration20261204190040 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table if exists "otpd_customer_verification" drop constraint if exists "otpd_customer_verification_customer_id_unique";`);
    this.addSql(`create table if not exists "otpd_customer_verification" ("id" text not null, "customer_id" text not null, "email_verified" boolean not null default false, "email_verified_at" timestamptz null, "email_verified_value" text null, "email_verification_id" text null, "phone_verified" boolean not null default false, "phone_verified_at" timestamptz null, "phone_verified_value" text null, "phone_verification_id" text null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), "deleted_at" timestamptz null, constraint "otpd_customer_verification_pkey" primary key ("id"));`);
    this.addSql(`CREATE INDEX IF NOT EXISTS "IDX_otpd_customer_verification_deleted_at" ON "otpd_customer_verification" ("deleted_at") WHERE deleted_at IS NULL;`);
    this.addSql(`CREATE UNIQUE INDEX IF NOT EXISTS "IDX_otpd_customer_verification_customer_id_unique" ON "otpd_customer_verification" ("customer_id") WHERE deleted_at IS NULL;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "otpd_customer_verification" cascade;`);
  }

}
